"""The version of the swreg distribution, as installed."""

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    try:
        return version("swreg")
    except PackageNotFoundError:  # a source tree that was not installed
        return "0.0.0+source"
