"""Names at the boundary: revisions by git's ref-name rules, model ids by the Hub's; a revision is
never used to name a file outside the cache's refs; an unreachable Hub is `HubUnavailable`
(worth retrying), not a refusal. The Hub is played by closed and failing loopback ports."""

import os
import re
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, in_thread, make_checkpoint
from workers.contract.errors import InvalidInput
from workers.fixtures.hf_cache import install_into_hf_cache
from workers.science.errors import CheckpointRefused
from workers.sources import hub, pinning
from workers.sources.errors import HubRefused, HubUnavailable

GOOD_REVISIONS = ["main", "v1.0", "refs/pr/1", "a" * 40, "feature/x-y_z", "0123abc", "r-2024.01"]
BAD_REVISIONS = [
    "/usr/bin/env",
    "../blobs/x",
    "a..b",
    "-x",
    ".hidden",
    "x/",
    "x.",
    "a//b",
    "a b",
    "a\x00b",
    "a\nb",
    "@",
    "x.lock",
    "x.lock/y",
    "a/.b",
    "a@{1}",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[",
    "a\\b",
    "x" * 256,
    "",
]
GOOD_IDS = ["gpt2", "huggyllama/llama-7b", "x_y.z-1/foo", "a" * 96 + "/" + "b" * 96]
BAD_IDS = ["a/b/c", "a--b", "é/x", "a\x00b", "a b", ".a", "a.git", "../x", "x" * 97, "", "a/"]


@pytest.mark.parametrize("revision", GOOD_REVISIONS)
def test_branch_tag_and_sha_names_pass(revision):
    assert pinning.check_revision(revision) == revision


@pytest.mark.parametrize("revision", BAD_REVISIONS)
def test_names_git_refuses_are_invalid_input(revision):
    with pytest.raises(InvalidInput, match="invalid revision") as caught:
        pinning.check_revision(revision)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.parametrize("model_id", GOOD_IDS)
def test_hub_ids_pass(model_id):
    assert pinning.check_model_id(model_id) == model_id
    assert re.match(pinning.MODEL_ID_PATTERN, model_id)


@pytest.mark.parametrize("model_id", BAD_IDS)
def test_ids_the_hub_refuses_are_invalid_input(model_id):
    with pytest.raises(InvalidInput, match="invalid model id"):
        pinning.check_model_id(model_id)
    # The pattern the OpenAPI document publishes says the same.
    assert not re.match(pinning.MODEL_ID_PATTERN, model_id)


def _in_time(fn, seconds: float = 10.0):
    """fn() in a thread: a call that reads a FIFO would block forever, failing here instead."""
    thread, outcome = in_thread(fn)
    thread.join(seconds)
    assert not thread.is_alive(), "the call blocked: it opened the file the revision names"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_a_revision_naming_a_file_is_refused_without_reading_it(tmp_path, hf_cache):
    install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    storage = pinning.repo_cache_dir(REPO)
    # A FIFO blocks whoever opens it for reading: reading it would hang this test.
    os.mkfifo(storage / "blobs" / "fifo")
    for revision in ("/usr/bin/env", "../blobs/fifo", "../../../../../../dev/zero"):
        with pytest.raises(InvalidInput, match="invalid revision"):
            _in_time(lambda r=revision: pinning.resolve_revision(REPO, r))


def test_only_a_sha_inside_the_refs_folder_pins_a_revision(tmp_path, hf_cache):
    sha = install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    refs = pinning.repo_cache_dir(REPO) / "refs"
    # A ref whose content names an existing folder (the snapshots' parent) is no commit.
    (refs / "evil").write_text("../..")
    # A ref that links out of the cache, and one far larger than a sha: neither is read.
    fifo = tmp_path / "outside-fifo"
    os.mkfifo(fifo)
    (refs / "out").symlink_to(fifo)
    with open(refs / "huge", "wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GiB that costs nothing on disk
    for name in ("evil", "out", "huge"):
        with pytest.raises(HubRefused, match="not in the local Hub cache"):
            _in_time(lambda n=name: pinning.resolve_revision(REPO, n))
    (refs / "v2").write_text(sha)
    assert pinning.resolve_revision(REPO, "v2") == sha


@pytest.mark.parametrize("state", ["hub_down", "hub_failing"])
def test_an_unreachable_or_failing_hub_is_unavailable_and_the_cache_stands_in(
    request, tmp_path, state
):
    cache = request.getfixturevalue(state)
    started = time.monotonic()
    with pytest.raises(HubUnavailable, match="not in the local Hub cache"):
        pinning.resolve_revision("acme/unknown", "main")
    with pytest.raises(HubUnavailable):
        hub.fetch_hub("acme/unknown", "b" * 40, max_bytes=10**9)
    assert time.monotonic() - started < 30
    sha = install_into_hf_cache(make_checkpoint(tmp_path / "m"), cache, REPO)
    assert pinning.resolve_revision(REPO, "main") == sha
    assert hub.fetch_hub(REPO, sha, max_bytes=10**9).offline


# --- the details a mutation run showed untested (docs/mutation.md) ---------------------------


def test_a_ref_file_holds_a_sha_within_its_size_bound_and_nothing_else(tmp_path, hf_cache):
    sha = install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    storage = pinning.repo_cache_dir(REPO)
    refs = storage / "refs"
    padding = pinning.MAX_REF_FILE_BYTES - len(sha)
    (refs / "at-bound").write_text(sha + " " * padding)
    (refs / "over-bound").write_text(sha + " " * (padding + 1))
    (refs / "not-ascii").write_bytes(b"\xff" * 40)
    (refs / "not-hex").write_text("g" * 40)
    assert pinning.cached_ref(storage, "at-bound") == sha
    for name in ("over-bound", "not-ascii", "not-hex", "missing"):
        assert pinning.cached_ref(storage, name) is None


def test_a_short_sha_pins_only_when_one_cached_commit_has_it(tmp_path, hf_cache):
    first = install_into_hf_cache(
        make_checkpoint(tmp_path / "m"), hf_cache, REPO, commit="abcdef1" + "1" * 33
    )
    install_into_hf_cache(
        make_checkpoint(tmp_path / "m"), hf_cache, REPO, commit="abcdef1" + "2" * 33
    )
    assert pinning.resolve_revision(REPO, "abcdef11") == first
    with pytest.raises(HubRefused) as caught:
        pinning.resolve_revision(REPO, "abcdef1")
    assert str(caught.value) == f"short revision 'abcdef1' of {REPO} is ambiguous in the cache"
    with pytest.raises(HubRefused, match="not in the local Hub cache"):
        pinning.resolve_revision(REPO, "0000000")


def test_names_of_the_wrong_type_or_too_long_are_refused_and_shown_shortened():
    with pytest.raises(InvalidInput) as caught:
        pinning.check_model_id(42)
    assert str(caught.value) == "invalid model id: expected a string, got int"
    with pytest.raises(InvalidInput) as caught:
        pinning.check_revision(4.5)
    assert str(caught.value) == "invalid revision: expected a string, got float"
    with pytest.raises(InvalidInput) as caught:
        pinning.check_model_id("é/x")
    assert str(caught.value) == (
        "invalid model id 'é/x': expected `name` or `namespace/name` of letters, digits, '-', "
        "'_' and '.' (at most 96 characters each, no '--' or '..')"
    )
    shown = "x" * pinning.SHOWN_CHARS
    with pytest.raises(InvalidInput, match=f"invalid revision '{shown}…': "):
        pinning.check_revision(shown + "~" * 10)
    exact = "~" * pinning.SHOWN_CHARS
    with pytest.raises(InvalidInput, match=f"invalid revision '{exact}': "):
        pinning.check_revision(exact)


def test_a_local_path_that_is_no_directory_is_refused_by_name(tmp_path):
    missing = tmp_path / "nothing"
    with pytest.raises(CheckpointRefused) as caught:
        pinning.hash_local_weights(missing)
    assert str(caught.value) == f"{missing}: not a directory"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_failing_hub_is_worth_retrying(tmp_path, fake_hub, status):
    fake_hub.failing_status = status
    with pytest.raises(HubUnavailable) as caught:
        pinning.resolve_revision(REPO, "v1")
    assert str(caught.value) == (
        f"{REPO}@v1 cannot be resolved: the Hub is failing (HTTP {status}) and it is not in "
        "the local Hub cache"
    )


@pytest.mark.parametrize("status", [400, 403, 499])
def test_a_hub_refusal_is_not_retried(tmp_path, fake_hub, status):
    fake_hub.failing_status = status
    with pytest.raises(HubRefused) as caught:
        pinning.resolve_revision(REPO, "main")
    message = str(caught.value)
    prefix = f"the Hub refused {REPO}: "
    # The first line of the Hub's own answer follows (for 403, the fake Hub's message).
    assert message.startswith(prefix) and "\n" not in message
    assert message[len(prefix) :] not in ("", "None")
    assert status != 403 or "failing with HTTP 403" in message


def test_a_disabled_repository_is_refused_by_name(fake_hub):
    fake_hub.failing_status = 403
    fake_hub.failing_message = "Access to this resource is disabled."
    with pytest.raises(HubRefused) as caught:
        pinning.resolve_revision(REPO, "main")
    assert str(caught.value) == f"repository {REPO} is disabled on the Hub"


def test_an_unreachable_hub_says_so_and_names_the_revision(hub_down):
    with pytest.raises(HubUnavailable) as caught:
        pinning.resolve_revision(REPO, "v1")
    assert str(caught.value) == (
        f"{REPO}@v1 cannot be resolved: the Hub is unreachable and it is not in the local Hub cache"
    )


# --- a local folder or a Hub id -----------------------------------------------------------------


def test_a_hub_id_with_nothing_at_its_path_is_no_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pinning.local_folder(REPO) is None
    assert pinning.local_folder("gpt2") is None


@pytest.mark.parametrize("written", ["./m", "../here/m", "ABSOLUTE/m", "~/m"])
def test_a_name_written_as_a_path_is_a_local_folder(tmp_path, monkeypatch, written):
    here = tmp_path / "here"
    make_checkpoint(here / "m")
    monkeypatch.chdir(here)
    monkeypatch.setenv("HOME", str(here))
    written = written.replace("ABSOLUTE", str(here))
    found = pinning.local_folder(written)
    assert found is not None and found.resolve() == (here / "m").resolve()
    assert "~" not in str(found)  # the home folder is expanded


def test_a_path_object_and_the_dot_folders_are_local_whatever_their_spelling(tmp_path, monkeypatch):
    (tmp_path / "inner").mkdir()
    monkeypatch.chdir(tmp_path / "inner")
    assert pinning.local_folder(".") == Path(".")
    assert pinning.local_folder("..") == Path("..")
    make_checkpoint(tmp_path / "inner" / "plain")
    assert pinning.local_folder(Path("plain")) == Path("plain")
    with pytest.raises(InvalidInput) as caught:
        pinning.local_folder(Path("missing"))
    assert str(caught.value) == (
        "no such folder: missing (a local model is a folder; a Hub model is written namespace/name)"
    )


def test_an_existing_folder_wins_over_a_hub_id_of_the_same_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_checkpoint(tmp_path / REPO)
    assert pinning.local_folder(REPO) == Path(REPO)


def test_a_missing_path_is_refused_by_name_not_tried_on_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInput) as caught:
        pinning.local_folder("./nowhere")
    assert str(caught.value) == (
        "no such folder: ./nowhere (a local model is a folder; a Hub model is written "
        "namespace/name)"
    )


@pytest.mark.parametrize("written", ["./weights.safetensors", "acme/file"])
def test_a_file_is_refused_as_the_folder_it_is_not(tmp_path, monkeypatch, written):
    monkeypatch.chdir(tmp_path)
    (tmp_path / written).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / written).write_bytes(b"x")
    with pytest.raises(InvalidInput) as caught:
        pinning.local_folder(written)
    assert str(caught.value) == (
        f"{written} is a file: a local model is the folder that holds its config.json and "
        "*.safetensors files"
    )


@pytest.mark.parametrize("command", ["detect", "quantize-check"])
def test_a_revision_for_a_local_folder_is_refused_in_the_same_words_everywhere(command, tmp_path):
    """`local_or_hub` is the one place the decision is made: the commands that read MODEL say
    exactly what it says, in one line, before any work."""
    from click.testing import CliRunner

    from registry.cli import main

    folder = make_checkpoint(tmp_path / "m")
    with pytest.raises(InvalidInput) as refused:
        pinning.local_or_hub(str(folder), "main")
    result = CliRunner().invoke(main, [command, str(folder), "--revision", "main"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [f"error: {refused.value}"]
    assert pinning.local_or_hub(str(folder)) == folder
    assert pinning.local_or_hub("org/model", "main") is None
