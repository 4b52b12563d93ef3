"""Revision resolution and fetching, through huggingface_hub: from a real offline cache (laid out
as huggingface_hub writes it), from a fake Hub served over HTTP in the test (tests/fake_hub.py,
which counts every byte it sends), and from local directories."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import REPO, make_checkpoint
from workers.fixtures.hf_cache import install_into_hf_cache
from workers.science.checkpoint import content_hash, fill_sha256, open_checkpoint
from workers.science.errors import CheckpointRefused
from workers.sources import hub, listing, local, pinning
from workers.sources.errors import HubNotFound, HubRefused, HubUnavailable


def test_resolve_from_the_cache_when_offline(tmp_path, hf_cache):
    sha = install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    assert pinning.resolve_revision(REPO) == sha  # refs/main
    assert pinning.resolve_revision(REPO, "main") == sha
    assert pinning.resolve_revision(REPO, sha) == sha
    assert pinning.resolve_revision(REPO, sha[:10]) == sha  # a short sha, unambiguous in the cache
    tagged = install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO, commit="f" * 40)
    (hf_cache / f"models--{REPO.replace('/', '--')}" / "refs" / "v1.0").write_text(tagged)
    assert pinning.resolve_revision(REPO, "v1.0") == tagged


@pytest.mark.parametrize(
    ("repo", "revision", "message"),
    [
        (
            "acme/unknown",
            None,
            "acme/unknown@main cannot be resolved: offline mode and it is not in the local Hub cache",
        ),
        (REPO, "no-such-branch", f"{REPO}@no-such-branch cannot be resolved"),
        (REPO, "e" * 40, "not in the local Hub cache"),
    ],
)
def test_unresolvable_revisions_are_refused_in_one_line(
    tmp_path, hf_cache, repo, revision, message
):
    install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    with pytest.raises(HubRefused) as caught:
        pinning.resolve_revision(repo, revision)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_fetch_reads_only_what_detection_needs_and_knows_the_hashes(tmp_path, hf_cache):
    pickle = b"\x80\x04pickled" * 100
    model = make_checkpoint(
        tmp_path / "m", extra={"pytorch_model.bin": pickle, "model.gguf": b"gguf" * 50}
    )
    sha = install_into_hf_cache(model, hf_cache, REPO)
    fetched = hub.fetch_hub(REPO, sha, max_bytes=10**9)
    names = [f["name"] for f in fetched.files]
    assert names == ["config.json", "model.safetensors", "tokenizer.json"]
    weights = (model / "model.safetensors").read_bytes()
    assert fetched.weight_sha256 == {"model.safetensors": hashlib.sha256(weights).hexdigest()}
    assert fetched.offline
    total = sum(p.stat().st_size for p in model.iterdir())
    assert fetched.repo_bytes == total
    assert fetched.selected_bytes == total - len(pickle) - 200
    assert fetched.path == hf_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / sha


def test_a_pickle_only_repository_is_refused_before_any_download(tmp_path, fake_hub):
    model = make_checkpoint(tmp_path / "m", weights=False, extra={"pytorch_model.bin": b"x" * 64})
    sha = fake_hub.add_repo(REPO, model)
    with pytest.raises(
        CheckpointRefused, match=r"pickle-only checkpoint \(never unpickled\)"
    ) as caught:
        hub.fetch_hub(REPO, sha, max_bytes=10**9)
    assert caught.value.permanent
    # Judged from the listing alone: not one file was asked for, config and tokenizer included.
    assert _file_requests(fake_hub) == []
    assert fake_hub.total_served() == 0


def test_a_checkpoint_over_the_cap_is_refused_before_any_download(tmp_path, fake_hub):
    sha = fake_hub.add_repo(REPO, make_checkpoint(tmp_path / "m"))
    with pytest.raises(
        CheckpointRefused, match=r"checkpoint is [0-9.e-]+ GB, over the cap of 1e-07 GB"
    ):
        hub.fetch_hub(REPO, sha, max_bytes=100)
    assert _file_requests(fake_hub) == []
    assert fake_hub.total_served() == 0


def test_a_sharded_checkpoint_over_the_cap_costs_only_its_index(tmp_path, fake_hub):
    model = _sharded_checkpoint(tmp_path / "m")
    sha = fake_hub.add_repo(REPO, model)
    index = (model / "model.safetensors.index.json").stat().st_size
    with pytest.raises(CheckpointRefused, match="over the cap"):
        hub.fetch_hub(REPO, sha, max_bytes=index + 100)
    # The index (a few hundred bytes) says which shards count; no shard was fetched.
    assert fake_hub.downloads(REPO) == ["model.safetensors.index.json"]
    assert fake_hub.total_served() == index


def test_a_fetch_downloads_only_what_detection_reads_and_counts_it(tmp_path, fake_hub):
    model = make_checkpoint(
        tmp_path / "m", extra={"pytorch_model.bin": b"p" * 5000, "model.gguf": b"g" * 5000}
    )
    sha = fake_hub.add_repo(REPO, model)
    fetched = hub.fetch_hub(REPO, sha, max_bytes=10**9)
    names = ["config.json", "model.safetensors", "tokenizer.json"]
    assert [f["name"] for f in fetched.files] == names
    assert sorted(fake_hub.downloads(REPO)) == names
    assert not fetched.offline
    # What the fetch reports as downloaded is what the Hub sent.
    assert fetched.downloaded_bytes == fake_hub.total_served() == fetched.selected_bytes
    assert fetched.repo_bytes == fetched.selected_bytes + 10_000
    weights = (model / "model.safetensors").read_bytes()
    assert fetched.weight_sha256 == {"model.safetensors": hashlib.sha256(weights).hexdigest()}
    assert fetched.path == fake_hub.cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / sha

    # Fetched again: everything is in the cache, nothing is sent and nothing is counted.
    again = hub.fetch_hub(REPO, sha, max_bytes=10**9)
    assert again.downloaded_bytes == 0
    assert fake_hub.total_served() == fetched.downloaded_bytes
    assert again.files == fetched.files


def test_a_revision_is_pinned_by_asking_the_hub(tmp_path, fake_hub):
    sha = fake_hub.add_repo(REPO, make_checkpoint(tmp_path / "m"))
    assert pinning.resolve_revision(REPO) == sha
    assert pinning.resolve_revision(REPO, "main") == sha
    with pytest.raises(HubNotFound, match="revision 'v9' not found"):
        pinning.resolve_revision(REPO, "v9")
    with pytest.raises(HubNotFound, match="repository acme/nothing not found"):
        pinning.resolve_revision("acme/nothing")


def _file_requests(fake_hub) -> list[tuple[str, str]]:
    """Every request for a file (HEAD or GET), as opposed to the listing API."""
    return [(m, p) for m, p in fake_hub.requests if "/resolve/" in p]


def _sharded_checkpoint(directory: Path) -> Path:
    model = make_checkpoint(directory, weights=False)
    shards = {"model-00001-of-00002.safetensors": "a", "model-00002-of-00002.safetensors": "b"}
    for name, tensor in shards.items():
        save_file({tensor: torch.ones(8, 8)}, str(model / name))
    weight_map = {tensor: name for name, tensor in shards.items()}
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return model


def test_local_revision_is_the_one_detect_reports(tmp_path):
    directory = make_checkpoint(tmp_path / "m")
    weights = pinning.hash_local_weights(directory)
    checkpoint = open_checkpoint(directory)
    fill_sha256(checkpoint)
    assert pinning.local_revision(weights) == content_hash(checkpoint)
    fetched, revision = local.fetch_local(directory, max_bytes=10**9)
    assert revision == content_hash(checkpoint)
    assert fetched.weight_sha256 == weights


def test_a_local_directory_that_changed_since_submission_is_refused(tmp_path):
    directory = make_checkpoint(tmp_path / "m")
    revision = pinning.local_revision(pinning.hash_local_weights(directory))
    save_file({"w": torch.zeros(4, 4)}, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointRefused, match="weight files changed since submission"):
        local.fetch_local(directory, max_bytes=10**9, expected_revision=revision)


def test_a_sharded_repository_fetches_the_indexed_shards_only(tmp_path, hf_cache):
    model = _sharded_checkpoint(tmp_path / "m")
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    # The same weights once more in another layout, and in pickle and GGUF form: never fetched.
    save_file(
        {"a": torch.ones(8, 8), "b": torch.ones(8, 8)}, str(model / "consolidated.safetensors")
    )
    extra = {"pytorch_model.bin": b"p" * 500, "model.gguf": b"g" * 500}
    sha = install_into_hf_cache(model, hf_cache, REPO, extra_files=extra)
    fetched = hub.fetch_hub(REPO, sha, max_bytes=10**9)
    assert [f["name"] for f in fetched.files] == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]
    assert sorted(fetched.weight_sha256) == sorted(shards)
    assert (
        fetched.selected_bytes
        < fetched.repo_bytes - (model / "consolidated.safetensors").stat().st_size
    )


# --- the details a mutation run showed untested (docs/mutation.md) ---------------------------

TOKEN = "hf_mutation_test_token"


def test_every_request_of_a_fetch_and_a_pin_carries_the_token(tmp_path, fake_hub):
    sha = fake_hub.add_repo(REPO, _sharded_checkpoint(tmp_path / "m"))
    assert pinning.resolve_revision(REPO, "main", token=TOKEN) == sha
    hub.fetch_hub(REPO, sha, max_bytes=10**9, token=TOKEN)
    assert "/resolve/" in " ".join(p for _, p in fake_hub.requests)  # files were fetched
    assert set(fake_hub.authorizations) == {f"Bearer {TOKEN}"}


def test_a_fetch_reads_the_commit_it_names_not_the_branch_head(tmp_path, fake_hub):
    old = fake_hub.add_repo(REPO, _sharded_checkpoint(tmp_path / "old"))
    # The branch head since: other weights, in shards of other names (its index says so).
    newer = make_checkpoint(tmp_path / "new", weights=False)
    save_file({"a": torch.zeros(8, 8)}, str(newer / "model-00001-of-00001.safetensors"))
    (newer / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00001.safetensors"}})
    )
    fake_hub.add_repo(REPO, newer, extra_files={"config.json": b'{"model_type": "llama"}'})
    fetched = hub.fetch_hub(REPO, old, max_bytes=10**9)
    assert sorted(fetched.weight_sha256) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    for name in ("config.json", "model-00001-of-00002.safetensors"):
        assert (fetched.path / name).read_bytes() == (tmp_path / "old" / name).read_bytes()


def test_weights_cached_under_another_commit_are_not_downloaded_or_counted(tmp_path, fake_hub):
    mine = tmp_path / "my-cache"
    first = fake_hub.add_repo(REPO, make_checkpoint(tmp_path / "m"))
    hub.fetch_hub(REPO, first, max_bytes=10**9, cache_dir=mine)
    # A later commit with the same weights and new config and tokenizer.
    changed = {"config.json": b'{"model_type": "llama", "x": 1}', "tokenizer.json": b'{"v": 2}'}
    second = fake_hub.add_repo(REPO, make_checkpoint(tmp_path / "m"), extra_files=changed)
    served = fake_hub.total_served()
    fetched = hub.fetch_hub(REPO, second, max_bytes=10**9, cache_dir=mine)
    assert fake_hub.total_served() - served == sum(len(c) for c in changed.values())
    assert fetched.downloaded_bytes == fake_hub.total_served() - served
    assert fetched.offline is False


def test_small_files_cached_under_another_commit_are_not_counted(tmp_path, fake_hub):
    mine = tmp_path / "my-cache"
    first = fake_hub.add_repo(REPO, make_checkpoint(tmp_path / "m"))
    hub.fetch_hub(REPO, first, max_bytes=10**9, cache_dir=mine)
    # A later commit with new weights and the same config and tokenizer: huggingface_hub finds
    # their blobs (named by git blob id) in the cache and sends for the weights alone.
    new_weights = make_checkpoint(tmp_path / "m2", weights=False)
    save_file({"w": torch.ones(4, 4)}, str(new_weights / "model.safetensors"))
    second = fake_hub.add_repo(REPO, new_weights)
    served = fake_hub.total_served()
    fetched = hub.fetch_hub(REPO, second, max_bytes=10**9, cache_dir=mine)
    assert fake_hub.total_served() - served == (new_weights / "model.safetensors").stat().st_size
    assert fetched.downloaded_bytes == fake_hub.total_served() - served


def test_empty_files_count_for_nothing(tmp_path, fake_hub):
    model = make_checkpoint(tmp_path / "m")
    sha = fake_hub.add_repo(REPO, model, extra_files={"empty.txt": b"", "empty.bin": b""})
    fetched = hub.fetch_hub(REPO, sha, max_bytes=10**9)
    assert fetched.repo_bytes == sum(p.stat().st_size for p in model.iterdir())


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_failing_hub_leaves_the_given_cache_folder_to_answer(tmp_path, fake_hub, status):
    sha = fake_hub.add_repo(REPO, make_checkpoint(tmp_path / "m"))
    mine = tmp_path / "my-cache"
    fetched = hub.fetch_hub(REPO, sha, max_bytes=10**9, cache_dir=mine)
    fake_hub.failing_status = status
    again = hub.fetch_hub(REPO, sha, max_bytes=10**9, cache_dir=mine)
    assert again.offline and again.files == fetched.files and again.downloaded_bytes == 0
    with pytest.raises(HubUnavailable) as caught:
        hub.fetch_hub(REPO, "b" * 40, max_bytes=10**9, cache_dir=mine)
    assert "is not in the local Hub cache and the Hub is unreachable" in str(caught.value)


@pytest.mark.parametrize("status", [400, 403, 499])
def test_a_hub_refusing_a_fetch_is_not_retried(tmp_path, fake_hub, status):
    sha = fake_hub.add_repo(REPO, make_checkpoint(tmp_path / "m"))
    fake_hub.failing_status = status
    with pytest.raises(HubRefused) as caught:
        hub.fetch_hub(REPO, sha, max_bytes=10**9)
    message = str(caught.value)
    prefix = f"the Hub refused {REPO}@{sha[:12]}: "
    # The first line of the Hub's own answer follows (for 403, the fake Hub's message).
    assert message.startswith(prefix) and "\n" not in message
    assert message[len(prefix) :] not in ("", "None")
    assert status != 403 or "failing with HTTP 403" in message


def test_a_gated_repository_asks_for_a_token(tmp_path, fake_hub):
    sha = fake_hub.add_repo(REPO, make_checkpoint(tmp_path / "m"))
    fake_hub.failing_status, fake_hub.failing_code = 403, "GatedRepo"
    with pytest.raises(HubRefused) as caught:
        hub.fetch_hub(REPO, sha, max_bytes=10**9)
    assert str(caught.value) == f"{REPO} is a gated repository: set HF_TOKEN"
    with pytest.raises(HubRefused) as caught:
        pinning.resolve_revision(REPO, "main")
    assert str(caught.value) == (
        f"{REPO} is a gated repository: accept its terms on the Hub and set HF_TOKEN"
    )


def test_a_fetch_into_a_given_cache_folder_keeps_everything_there(tmp_path, fake_hub, monkeypatch):
    from huggingface_hub import constants

    model = _sharded_checkpoint(tmp_path / "m")
    extra = {"pytorch_model.bin": b"p" * 700, "empty.txt": b""}
    sha = fake_hub.add_repo(REPO, model, extra_files=extra)
    mine = tmp_path / "my-cache"
    fetched = hub.fetch_hub(REPO, sha, max_bytes=10**9, cache_dir=mine)
    assert fetched.path == mine / f"models--{REPO.replace('/', '--')}" / "snapshots" / sha
    assert list(fake_hub.cache.iterdir()) == []
    # Everything selected, the shard index fetched first included, and nothing else.
    assert fetched.downloaded_bytes == fake_hub.total_served() == fetched.selected_bytes
    # Found again in that folder: nothing downloaded.
    assert hub.fetch_hub(REPO, sha, max_bytes=10**9, cache_dir=mine).downloaded_bytes == 0
    # Offline, that folder alone answers, and the listing huggingface_hub cached with the
    # download still knows the files that were never fetched (their sizes too, empty or not).
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = hub.fetch_hub(REPO, sha, max_bytes=10**9, cache_dir=mine)
    assert offline.offline and offline.downloaded_bytes == 0
    assert offline.files == fetched.files and offline.repo_bytes == fetched.repo_bytes
    with pytest.raises(HubRefused):
        hub.fetch_hub(REPO, sha, max_bytes=10**9)  # not in the default cache


def test_fetch_refusals_say_what_and_why_in_one_line(tmp_path, fake_hub):
    sha = fake_hub.add_repo(REPO, make_checkpoint(tmp_path / "m"))
    cases = [
        (CheckpointRefused, "main", "acme/tiny-model: revision 'main' is not a full commit sha"),
        (HubNotFound, "e" * 40, f"revision {'e' * 40} no longer exists in {REPO}"),
    ]
    for error, revision, message in cases:
        with pytest.raises(error) as caught:
            hub.fetch_hub(REPO, revision, max_bytes=10**9)
        assert str(caught.value) == message
    with pytest.raises(HubNotFound) as caught:
        hub.fetch_hub("acme/nothing", sha, max_bytes=10**9)
    assert str(caught.value) == "repository acme/nothing no longer exists on the Hub"
    with pytest.raises(CheckpointRefused) as caught:
        hub.fetch_hub(REPO, sha, max_bytes=1)
    assert str(caught.value).startswith(f"{REPO}@{sha[:12]}: checkpoint is ")


def test_a_pickle_refusal_names_the_repository_and_commit(tmp_path, fake_hub):
    model = make_checkpoint(tmp_path / "m", weights=False, extra={"pytorch_model.bin": b"x" * 64})
    sha = fake_hub.add_repo(REPO, model)
    with pytest.raises(CheckpointRefused, match=f"^{REPO}@{sha[:12]}: "):
        hub.fetch_hub(REPO, sha, max_bytes=10**9)


def test_a_commit_missing_from_the_cache_says_whether_offline_or_unreachable(request, tmp_path):
    hf_cache = request.getfixturevalue("hf_cache")
    with pytest.raises(HubRefused) as caught:
        hub.fetch_hub("acme/unknown", "b" * 40, max_bytes=10**9)
    assert str(caught.value) == (
        f"acme/unknown@{'b' * 40} is not in the local Hub cache (offline mode)"
    )
    request.getfixturevalue("hub_down")
    assert hf_cache.is_dir()
    with pytest.raises(HubUnavailable) as caught:
        hub.fetch_hub("acme/unknown", "b" * 40, max_bytes=10**9)
    assert str(caught.value) == (
        f"acme/unknown@{'b' * 40} is not in the local Hub cache and the Hub is unreachable"
    )


def test_only_top_level_metadata_is_fetched(tmp_path, fake_hub):
    extra = {"onnx/spiece.model": b"sp", "sub/tokenizer.json": b"{}", "sub/README.md": b"hi"}
    model = make_checkpoint(tmp_path / "m")
    (model / "README.md").write_text("# a model card that names no base model\n")
    sha = fake_hub.add_repo(REPO, model, extra_files=extra)
    fetched = hub.fetch_hub(REPO, sha, max_bytes=10**9)
    # Each fetched file with its size and sha256 (hashed here, since only LFS files come with
    # one from the Hub); the top-level model card is read too (the base model it may name).
    assert fetched.files == [
        {
            "name": name,
            "size": (model / name).stat().st_size,
            "sha256": hashlib.sha256((model / name).read_bytes()).hexdigest(),
        }
        for name in ("README.md", "config.json", "model.safetensors", "tokenizer.json")
    ]
    assert fetched.base_model is None


def test_an_unreachable_hub_leaves_the_given_cache_folder_to_answer(tmp_path, hub_down):
    mine = tmp_path / "my-cache"
    sha = install_into_hf_cache(make_checkpoint(tmp_path / "m"), mine, REPO)
    fetched = hub.fetch_hub(REPO, sha, max_bytes=10**9, cache_dir=mine)
    assert fetched.offline and [f["name"] for f in fetched.files] == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]


def test_a_checkpoint_exactly_at_the_cap_is_fetched(tmp_path, fake_hub):
    sha = fake_hub.add_repo(REPO, make_checkpoint(tmp_path / "m"))
    size = hub.fetch_hub(REPO, sha, max_bytes=10**9).selected_bytes
    assert hub.fetch_hub(REPO, sha, max_bytes=size).selected_bytes == size


def test_an_offline_fetch_downloads_nothing(tmp_path, hf_cache):
    sha = install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    fetched = hub.fetch_hub(REPO, sha, max_bytes=10**9)
    assert fetched.offline and fetched.downloaded_bytes == 0


def test_a_fetch_summary_reports_files_and_bytes(tmp_path):
    files = [{"name": "config.json", "size": 2, "sha256": "0" * 64}]
    summary = listing.FetchResult(
        path=tmp_path,
        files=files,
        selected_bytes=2,
        downloaded_bytes=1,
        repo_bytes=3,
        offline=True,
    ).summary()
    assert summary == {
        "files": files,
        "selected_bytes": 2,
        "downloaded_bytes": 1,
        "repo_bytes": 3,
        "offline": True,
    }
