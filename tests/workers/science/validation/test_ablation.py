"""A variant's layer: the tokens where the baseline spikes, and the recorded outputs."""

import torch
from torch import nn

from workers.science.validation.ablation import OutputRecorder, recording, spike_tokens


def test_spike_tokens_are_where_the_row_reaches_the_level_either_sign():
    outputs = torch.zeros(1, 6, 4)  # one window of 6 tokens, 4 output rows
    outputs[0, 1, 2] = -50.0
    outputs[0, 4, 2] = 50.0  # exactly at the level
    outputs[0, 5, 2] = 49.0
    outputs[0, 3, 1] = 80.0  # another row
    assert spike_tokens(outputs, 2, 50.0) == [1, 4]
    assert spike_tokens(outputs, 1, 50.0) == [3]
    assert spike_tokens(outputs[0], 0, 50.0) == []


def test_the_recorder_keeps_a_copy_of_the_output_and_the_input_only_when_asked():
    layer = nn.Linear(3, 2)
    x = torch.ones(1, 3)
    recorder = OutputRecorder(layer)
    assert recorder.inputs is None and recorder.outputs is None
    out = layer(x)
    assert recorder.inputs is None
    assert torch.equal(recorder.outputs, out.detach())
    with torch.no_grad():
        out.zero_()  # changed in place further down the layer: the copy is not
    assert not torch.equal(recorder.outputs, out)
    recorder.remove()
    with recording(layer, keep_inputs=True) as keeping:
        layer(2 * x)
    assert torch.equal(keeping.inputs, 2 * x)
    layer(3 * x)  # removed: records nothing more
    assert torch.equal(keeping.inputs, 2 * x)
