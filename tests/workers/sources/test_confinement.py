"""Paths confined: every file a local checkpoint names (its shard index's weight_map, its weight
files' links) resolves inside its folder, or the checkpoint is refused with one message whatever
lies outside, before anything outside is opened (a FIFO there would hang whoever opened it)."""

import json
import os
import threading

import pytest

from tests.helpers import make_checkpoint
from workers.science.checkpoint import OUTSIDE_THE_CHECKPOINT, open_checkpoint
from workers.science.errors import CheckpointRefused
from workers.sources import local, pinning

# Refused by name: far quicker than this even on a loaded machine.
REFUSAL_SECONDS = 10


def _refusal(call) -> str:
    """The one-line refusal of `call()`, run where a hang (a FIFO opened) shows as a timeout."""
    outcome: dict = {}

    def run():
        try:
            call()
        except CheckpointRefused as exc:
            outcome["message"] = str(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(REFUSAL_SECONDS)
    assert not thread.is_alive(), "something outside the checkpoint was opened"
    assert "message" in outcome, "the checkpoint was not refused"
    return outcome["message"]


@pytest.fixture
def outside(tmp_path):
    """What lies outside: a file that exists, one that does not, a FIFO, a parent's file."""
    (tmp_path / "secret.safetensors").write_bytes(b"outside")
    os.mkfifo(tmp_path / "fifo.safetensors")
    return {
        "an existing file": "/etc/shadow",
        "a missing file": "/etc/no-such-file",
        "a FIFO": str(tmp_path / "fifo.safetensors"),
        "a parent's file": "../secret.safetensors",
        "a subfolder's escape": "sub/../../secret.safetensors",
    }


@pytest.mark.parametrize(
    "step",
    [
        ("submission", pinning.hash_local_weights),
        ("fetch", lambda d: local.fetch_local(d, max_bytes=10**9)),
        ("analysis", open_checkpoint),
    ],
    ids=lambda s: s[0],
)
def test_a_shard_index_naming_anything_outside_gets_one_answer(tmp_path, outside, step):
    _, call = step
    messages = set()
    for what, name in outside.items():
        folder = make_checkpoint(tmp_path / "models" / what.replace(" ", "-"))
        index = {"weight_map": {"w": name, "v": "model.safetensors"}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        message = _refusal(lambda folder=folder: call(folder))
        messages.add(message.replace(str(folder), "<folder>"))
    assert messages == {f"<folder>: {OUTSIDE_THE_CHECKPOINT}"}


def test_a_weight_file_linking_outside_gets_the_same_answer_whether_its_target_exists(
    tmp_path, outside
):
    messages = set()
    for what in ("an existing file", "a missing file", "a FIFO"):
        folder = make_checkpoint(tmp_path / what.replace(" ", "-"), weights=False)
        (folder / "model.safetensors").symlink_to(outside[what])
        for call in (pinning.hash_local_weights, lambda d: local.fetch_local(d, max_bytes=10**9)):
            message = _refusal(lambda call=call, folder=folder: call(folder))
            messages.add(message.replace(str(folder), "<folder>"))
    assert messages == {f"<folder>: {OUTSIDE_THE_CHECKPOINT}"}


def test_a_shard_index_over_its_cap_is_refused_before_it_is_read(tmp_path):
    from workers.science import limits

    folder = make_checkpoint(tmp_path / "m")
    index = folder / "model.safetensors.index.json"
    with index.open("wb") as handle:  # sparse: 32 MB that cost no disk, and would cost memory
        handle.truncate(32 * 1024**2)
    assert limits.current().shard_index_bytes < 32 * 1024**2
    message = _refusal(lambda: pinning.hash_local_weights(folder))
    assert message == (
        f"{index}: shard index is {32 * 1024**2:,} bytes, over the cap of "
        f"{limits.current().shard_index_bytes:,} bytes"
    )
