"""swreg: a registry of super weights in large language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("swreg")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
