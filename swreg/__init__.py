"""swreg's Python API: the super-weight registry from your own code.

- `Client`: the HTTP API of a swreg server (lookup, list, index, submit, job, wait).
- `Index`: a JSON index file (or the published one, `Index.published()`), read offline.
- `coordinates_for(model, revision=None, api=... | index=...)`: the coordinates of a Hub
  revision or of a local directory (by the content hash of its weights).
- `locate(model, coordinates)`: where those weights are in a loaded transformers model
  (`state_dict()` name and index, Conv1D included); `read`, `keep`, `restore` and `keeping`
  work with them around your own quantization.

Importing swreg loads nothing heavy: each name is imported when first used (torch and
transformers only with the mapping helpers).
"""

import importlib
from typing import TYPE_CHECKING, Any

from workers.contract.version import package_version

__version__ = package_version()

# public name -> the module that defines it
_EXPORTS = {
    "Client": "swreg.client",
    "Index": "swreg.index",
    "Coordinates": "swreg.coordinates",
    "coordinates_for": "swreg.coordinates",
    "ModelWeight": "swreg.mapping",
    "Kept": "swreg.mapping",
    "locate": "swreg.mapping",
    "read": "swreg.mapping",
    "keep": "swreg.mapping",
    "restore": "swreg.mapping",
    "keeping": "swreg.mapping",
    "SwregError": "swreg.errors",
    "NotFound": "swreg.errors",
    "InvalidInput": "swreg.errors",
    "Unavailable": "swreg.errors",
    "Unauthorized": "swreg.errors",
    "ApiError": "swreg.errors",
    "Conflict": "swreg.errors",
    "PublishedFallback": "swreg.coordinates",
}

__all__ = [
    "ApiError",
    "Client",
    "Conflict",
    "Coordinates",
    "Index",
    "InvalidInput",
    "Kept",
    "ModelWeight",
    "NotFound",
    "PublishedFallback",
    "SwregError",
    "Unauthorized",
    "Unavailable",
    "coordinates_for",
    "keep",
    "keeping",
    "locate",
    "read",
    "restore",
]

if TYPE_CHECKING:
    from swreg.client import Client
    from swreg.coordinates import Coordinates, PublishedFallback, coordinates_for
    from swreg.errors import (
        ApiError,
        Conflict,
        InvalidInput,
        NotFound,
        SwregError,
        Unauthorized,
        Unavailable,
    )
    from swreg.index import Index
    from swreg.mapping import Kept, ModelWeight, keep, keeping, locate, read, restore


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'swreg' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
