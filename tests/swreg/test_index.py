"""The offline index reader and `coordinates_for` on an index file: a file written by
`swreg export` answers lookups exactly as the registry does, a local directory is found by the
content hash of its weights, and bad files are refused with one line."""

import json

import pytest

from registry.database import transaction
from registry.index import service as index_service
from registry.superweights import service
from swreg import Index, InvalidInput, NotFound, coordinates_for
from tests.helpers import SHA_A, smollm2_like_report
from workers.contract.resources import PUBLISHED_INDEX_PATH
from workers.sources.pinning import hash_local_weights, local_revision


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory):
    """A directory whose weights are recorded in the index below (any safetensors will do: the
    reader only hashes it)."""
    from tests.helpers import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("weights") / "my-model")


@pytest.fixture
def exported(db_sessions, planted_dir, tmp_path):
    """An index file exported from a registry holding the published index, a SmolLM2-like
    report at a commit and the same report for a local directory under two model ids."""
    content = local_revision(hash_local_weights(planted_dir))
    with transaction(db_sessions) as session:
        index_service.import_document(session, index_service.load_file(PUBLISHED_INDEX_PATH))
        for model_id, revision in (
            ("org/smol", SHA_A),
            ("me/local", content),
            ("me/copy", content),
        ):
            service.record_report(
                session,
                model_id=model_id,
                revision=revision,
                revision_kind=service.revision_kind_of(revision),
                report=smollm2_like_report(),
            )
        document = index_service.export_document(session)
        expected = service.lookup_document(session, "org/smol")
    path = tmp_path / "index.json"
    path.write_text(index_service.dumps(document))
    return path, content, expected


def test_a_lookup_in_the_file_answers_what_the_registry_answers(exported):
    path, _, expected = exported
    index = Index.load(path)
    assert index.source == str(path)
    assert index.lookup("org/smol").model_dump(mode="json") == expected
    assert index.meta.schema_version == 2 and index.meta.generator.startswith("swreg ")
    published = {m["model_id"] for m in index_service.load_file(PUBLISHED_INDEX_PATH)["models"]}
    assert len(index.model_ids()) == len(published) + 3
    with pytest.raises(NotFound, match=f"^model not in {path}: nobody/nothing$"):
        index.lookup("nobody/nothing")
    with pytest.raises(NotFound, match="has no revision"):
        index.lookup("org/smol", "b" * 40)


def test_the_published_index_ships_with_the_package():
    index = Index.published()
    (revision,) = index.lookup("huggyllama/llama-7b").revisions
    assert revision.revision == "unknown" and revision.quantization_check is None
    assert [sw.index for sw in revision.super_weights] == [[3968, 7003]]
    # The published file leaves the times out: they read as the API shows unknown times.
    assert "created_at" not in json.loads(PUBLISHED_INDEX_PATH.read_text())["models"][0]
    assert (revision.created_at, revision.updated_at) == (None, None)


def test_a_directory_is_found_by_its_content_hash(exported, planted_dir, tmp_path):
    path, content, _ = exported
    # The same weights under two ids: their coordinates, with both ids (and a word saying so).
    both = coordinates_for(planted_dir, index=path)
    assert both.model_ids == ("me/copy", "me/local") and both.model_id in both.model_ids
    assert [(c.tensor, c.index) for c in both] == [
        ("model.layers.11.mlp.down_proj.weight", [507, 1229])
    ]
    assert both.note.startswith("these weights are recorded under 2 model ids (me/copy, me/local)")
    found = coordinates_for(planted_dir, index=path, model_id="me/local")
    assert (found.model_id, found.revision, found.source) == ("me/local", content, str(path))
    assert (found.model_ids, found.note) == (("me/local",), None)
    # The default states: verified (and published); the rejected late spike is left out.
    assert [(c.tensor, c.index, c.state) for c in found] == [
        ("model.layers.11.mlp.down_proj.weight", [507, 1229], "verified")
    ]
    assert len(coordinates_for(planted_dir, index=path, model_id="me/local", states=None)) == 2
    # The same weights elsewhere are the same revision; other weights are not in the index.
    other = tmp_path / "other"
    other.mkdir()
    for file in planted_dir.iterdir():
        (other / file.name).write_bytes(file.read_bytes())
    assert coordinates_for(other, index=path, model_id="me/copy").revision == content
    (other / "model.safetensors").write_bytes(
        (planted_dir / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0"
    )
    with pytest.raises(NotFound, match=r"its weights \(revision sha256:[0-9a-f]{64}\) are not in"):
        coordinates_for(other, index=path)


def test_a_hub_model_by_commit_or_the_published_entries(exported):
    path, _, _ = exported
    index = Index.load(path)
    found = coordinates_for("org/smol", SHA_A, index=index)
    assert (found.revision, [c.index for c in found]) == (SHA_A, [[507, 1229]])
    assert (
        coordinates_for("huggyllama/llama-7b", "unknown", index=index).super_weights[0].state
        == "published"
    )
    with pytest.raises(NotFound, match="pass revision='unknown'"):
        coordinates_for("huggyllama/llama-7b", "c" * 40, index=index)
    with pytest.raises(InvalidInput, match="model_id applies to local directories"):
        coordinates_for("org/smol", SHA_A, index=index, model_id="org/other")


def test_bad_files_are_refused_with_one_line(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(InvalidInput, match="no such file"):
        Index.load(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"meta": ')
    with pytest.raises(InvalidInput, match="not JSON"):
        Index.load(broken)
    document = json.loads(PUBLISHED_INDEX_PATH.read_text())
    document["models"][0]["super_weights"][0]["state"] = "bogus"
    with pytest.raises(
        InvalidInput, match=r"^invalid index: at /models/0/super_weights/0/state: 'bogus'"
    ):
        Index.from_document(document)


def test_a_hub_id_that_cannot_be_pinned_falls_back_to_its_published_coordinates(hf_cache):
    """Offline, with nothing in the Hugging Face cache: no commit to pin to. The published
    coordinates answer (revision unknown), and it is said: a note and a warning."""
    from swreg import PublishedFallback, SwregError

    published = Index.published()
    with pytest.warns(PublishedFallback, match="could not be pinned to a commit"):
        found = coordinates_for("meta-llama/Llama-2-7b-hf", index=published)
    assert (found.revision, [sw.index for sw in found]) == ("unknown", [[2533, 7890]])
    assert "cannot be resolved" in found.note and "revision='unknown'" in found.note
    # A revision asked for by name is not silently replaced; nor is a model with no entry.
    with pytest.raises(SwregError, match="cannot be resolved"):
        coordinates_for("meta-llama/Llama-2-7b-hf", "main", index=published)
    with pytest.raises(SwregError, match="cannot be resolved"):
        coordinates_for("nobody/nothing", index=published)
