"""Hybrids (linear-attention, state-space or convolution mixers beside an MLP) stream layer by
layer: the streamed model computes what the whole model computes, each layer with its own mask
and state, on tiny random models of each family."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from workers.fixtures.tiny import build_tiny_model
from workers.science.checkpoint import open_checkpoint
from workers.science.streaming import LayerStreamer

pytestmark = pytest.mark.usefixtures("one_thread")

HYBRIDS = (
    "qwen3_5_text",
    "falcon_h1",
    "lfm2",
    "bamba",
    "zamba",
    "zamba2",
    "nemotron_h",
    "recurrent_gemma",
    "xlstm",
)
SAME_LOGITS = 1e-4


@pytest.mark.parametrize("model_type", HYBRIDS)
@torch.inference_mode()
def test_the_streamed_hybrid_computes_what_the_whole_model_computes(model_type, tmp_path):
    path = build_tiny_model(model_type, tmp_path / model_type)
    checkpoint = open_checkpoint(path)
    assert checkpoint.feed_forward.mixers, f"{model_type}: no mixer found"
    ids = torch.tensor([[257, *b"The keeper climbed the stairs of the old lighthouse."]])
    whole = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation=checkpoint.feed_forward.attention
    ).eval()
    expected = whole(input_ids=ids, use_cache=False).logits
    streamer = LayerStreamer(checkpoint)
    try:
        capture = streamer.capture(ids)
        hidden = capture.embeddings
        for layer in range(streamer.num_layers):
            streamer.load_layer(layer)
            hidden = streamer.run_layer(layer, hidden, capture)
            streamer.release_layer(layer)
        streamed = streamer.head(hidden)
    finally:
        streamer.close()
    assert torch.allclose(streamed, expected, atol=SAME_LOGITS, rtol=SAME_LOGITS), (
        f"{model_type}: max |difference| {(streamed - expected).abs().max():.3g}"
    )
