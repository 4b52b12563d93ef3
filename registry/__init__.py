"""swreg's registry: what is stored and served (models, migrations, service rules, the HTTP API,
the command line, the JSON index)."""

from workers.contract.version import package_version

__version__ = package_version()
