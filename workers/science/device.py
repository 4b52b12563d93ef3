"""The device models run on, checked before any work: a device the machine lacks would fail every
job (and, in a worker, use up every job's attempts) rather than the one run that asked for it."""

from workers.contract.errors import InvalidInput

DEVICES = ("cpu", "cuda")


class DeviceUnavailable(InvalidInput):
    """Models cannot run on the asked-for device here."""


def require_device(device: str) -> None:
    """Return when `device` can run models here; raise DeviceUnavailable with the reason."""
    if device not in DEVICES:
        raise DeviceUnavailable(f"device {device!r}: not one of {', '.join(DEVICES)}")
    if device == "cuda":
        import torch  # seconds to import: only when a GPU is asked for

        if not torch.cuda.is_available():
            raise DeviceUnavailable("device cuda: no CUDA device is available")
