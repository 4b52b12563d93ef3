"""The device check every model-running command makes before any work: cpu always, cuda exactly
when torch sees a GPU, anything else refused by name."""

import pytest
import torch

from workers.contract.errors import InvalidInput
from workers.science.device import DeviceUnavailable, require_device


def test_the_cpu_is_always_there():
    require_device("cpu")


def test_cuda_is_accepted_exactly_when_torch_sees_a_gpu():
    if torch.cuda.is_available():
        require_device("cuda")
        return
    with pytest.raises(DeviceUnavailable, match=r"^device cuda: no CUDA device is available$"):
        require_device("cuda")


def test_an_unknown_device_is_refused_by_name():
    with pytest.raises(DeviceUnavailable, match=r"^device 'tpu': not one of cpu, cuda$"):
        require_device("tpu")
    # A usage error: asking again unchanged gives the same answer (exit status 2).
    assert issubclass(DeviceUnavailable, InvalidInput)
