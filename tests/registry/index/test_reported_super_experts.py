"""The super experts that Su et al. report (arXiv:2507.23279), shipped as data and loaded by
`swreg setup`: each as the paper's Table 2 states it, with its sources, state `reported`; the
earlier version's different DeepSeek-V2-Lite placements kept as disputes."""

import json

from registry.database import transaction
from registry.index import service as index_service
from registry.superweights import service
from workers.contract.resources import REPORTED_SUPER_EXPERTS_PATH

# Written out independently of the data file: (model, layer, expert), as Table 2 of v3 reads
# (one row names a model and its base or instruct twin; layers and experts counted from 0).
TABLE_2_V3 = {
    *{
        (m, layer, expert)
        for m in ("Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B-Base")
        for layer, expert in ((1, 68), (2, 92), (3, 82))
    },
    *{
        (m, layer, expert)
        for m in ("deepseek-ai/DeepSeek-V2-Lite-Chat", "deepseek-ai/DeepSeek-V2-Lite")
        for layer, expert in ((3, 54), (4, 38))
    },
    *{(m, 1, 3) for m in ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mistralai/Mixtral-8x7B-v0.1")},
}
# Table 2 of v2 (the ar5iv rendering) for DeepSeek-V2-Lite(-Chat): one layer lower.
TABLE_2_V2 = {
    (m, layer, expert)
    for m in ("deepseek-ai/DeepSeek-V2-Lite-Chat", "deepseek-ai/DeepSeek-V2-Lite")
    for layer, expert in ((2, 54), (3, 38))
}


def _entries(document) -> dict[tuple, dict]:
    return {
        (m["model_id"], se["layer"], se["expert"]): se
        for m in document["models"]
        for se in m["super_experts"]
    }


def test_the_file_states_table_2_with_its_sources():
    document = index_service.load_file(REPORTED_SUPER_EXPERTS_PATH)
    assert document["meta"]["schema_version"] == 2
    assert all(m["revision"] == "unknown" and m["super_weights"] == [] for m in document["models"])
    entries = _entries(document)
    assert set(entries) == TABLE_2_V3 | TABLE_2_V2
    for key, se in entries.items():
        assert se["state"] == "reported"
        sources = se["provenance"]["sources"]
        assert all(
            "arXiv:2507.23279" in s["citation"] and s["url"] == "https://arxiv.org/abs/2507.23279"
            for s in sources
        )
        table = [s for s in sources if s["locator"].startswith("Table 2")]
        assert len(table) == 1
        assert f"Layer {key[1]} Expert {key[2]}" in table[0]["statement"]
        assert ("(v2)" in table[0]["locator"]) == (key in TABLE_2_V2)
    assert {se["module"] for key, se in entries.items() if "Mixtral" in key[0]} == {
        "block_sparse_moe.experts"
    }


def test_the_deepseek_placements_of_the_two_versions_dispute_each_other():
    entries = _entries(index_service.load_file(REPORTED_SUPER_EXPERTS_PATH))
    for model in ("deepseek-ai/DeepSeek-V2-Lite-Chat", "deepseek-ai/DeepSeek-V2-Lite"):
        for new, old in (((3, 54), (2, 54)), ((4, 38), (3, 38))):
            assert entries[(model, *new)]["provenance"]["disputed_with"] == [
                dict(zip(("layer", "expert"), old, strict=True))
            ]
            assert entries[(model, *old)]["provenance"]["disputed_with"] == [
                dict(zip(("layer", "expert"), new, strict=True))
            ]
    assert all(
        not se["provenance"]["disputed_with"]
        for key, se in entries.items()
        if "DeepSeek" not in key[0]
    )


def test_the_file_is_in_canonical_form():
    text = REPORTED_SUPER_EXPERTS_PATH.read_text(encoding="utf-8")
    assert index_service.dumps(json.loads(text)) == text


def test_imported_they_are_served_with_their_sources(db_sessions):
    with transaction(db_sessions) as session:
        stats = index_service.import_document(
            session, index_service.load_file(REPORTED_SUPER_EXPERTS_PATH)
        )
    assert stats.super_experts["created"] == len(TABLE_2_V3 | TABLE_2_V2)
    with db_sessions() as session:
        (revision,) = service.lookup_document(session, "Qwen/Qwen3-30B-A3B")["revisions"]
    assert [(se["layer"], se["expert"], se["state"]) for se in revision["super_experts"]] == [
        (1, 68, "reported"),
        (2, 92, "reported"),
        (3, 82, "reported"),
    ]
    assert any(
        s["locator"].startswith("Figure 3")
        for s in revision["super_experts"][0]["provenance"]["sources"]
    )
