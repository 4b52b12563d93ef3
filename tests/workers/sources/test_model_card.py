"""The base model a repository's model card names, read by the fetch at the pinned commit through
a Hub served over HTTP (tests/fake_hub.py) and from a local folder: one valid Hub id, or none.
A card is the model author's text: hostile values (a path, a merge of three models, kilobytes of
garbage, YAML tags that would build objects) name no base and never fail the fetch, and a card
over the size cap is not even downloaded."""

import random

import pytest

from tests.helpers import make_checkpoint
from workers.sources import hub, local, pinning
from workers.sources.model_card import MAX_MODEL_CARD_BYTES, MODEL_CARD

BASE = "acme/base"
# Garbage the size of a long model card, drawn from every byte (seeded).
GARBAGE_BYTES = 10 * 1024
GARBAGE_SEED = 20
PWNED = "pwned"


def _card(front_matter: str) -> bytes:
    return f"---\n{front_matter}\n---\n# A model\n\nSome text.\n".encode()


def _garbage() -> bytes:
    return random.Random(GARBAGE_SEED).randbytes(GARBAGE_BYTES)


CARDS = {
    "a string": (_card(f"base_model: {BASE}"), BASE),
    "a list of one": (_card(f"base_model:\n- {BASE}"), BASE),
    "with other fields": (_card(f"license: mit\nbase_model: {BASE}\ntags: [a, b]"), BASE),
    "a merge of three": (_card("base_model: [acme/a, acme/b, acme/c]"), None),
    "a path": (_card("base_model: ../../../etc/passwd"), None),
    "an absolute path": (_card("base_model: /home/someone/model"), None),
    "a URL": (_card("base_model: https://example.com/acme/base"), None),
    "a number": (_card("base_model: 7"), None),
    "a mapping": (_card("base_model: {id: acme/base}"), None),
    # Would run a command if the card were loaded unsafely: it touches PWNED in the test's folder.
    "a python tag": (_card('base_model: !!python/object/apply:os.system ["touch {pwned}"]'), None),
    "a custom tag": (_card(f"base_model: !model {BASE}"), None),
    "malformed YAML": (_card("base_model: [acme/base"), None),
    "no front matter": (b"# A model\n\nbase_model: acme/base\n", None),
    "garbage": (_garbage(), None),
    "front matter that is a list": (_card(f"- base_model: {BASE}"), None),
}


@pytest.mark.parametrize("name", list(CARDS))
def test_the_fetch_reads_the_base_model_of_the_card_at_the_pinned_commit(name, tmp_path, fake_hub):
    card, expected = CARDS[name]
    pwned = tmp_path / PWNED
    card = card.replace(b"{pwned}", str(pwned).encode())
    model = make_checkpoint(tmp_path / "m")
    sha = fake_hub.add_repo("acme/fine-tune", model, extra_files={MODEL_CARD: card})
    fetched = hub.fetch_hub("acme/fine-tune", sha, max_bytes=10**9)
    assert fetched.base_model == expected
    assert MODEL_CARD in fake_hub.downloads("acme/fine-tune")
    assert not pwned.exists()


def test_the_card_of_the_pinned_commit_is_read_not_the_latest(tmp_path, fake_hub):
    model = make_checkpoint(tmp_path / "m")
    first = fake_hub.add_repo("acme/ft", model, base_model=BASE)
    fake_hub.add_repo("acme/ft", model, base_model="acme/other-base")  # main moves on
    assert hub.fetch_hub("acme/ft", first, max_bytes=10**9).base_model == BASE


def test_a_card_over_the_cap_is_not_downloaded(tmp_path, fake_hub):
    card = _card(f"base_model: {BASE}") + b"x" * MAX_MODEL_CARD_BYTES
    sha = fake_hub.add_repo(
        "acme/long-card", make_checkpoint(tmp_path / "m"), extra_files={MODEL_CARD: card}
    )
    fetched = hub.fetch_hub("acme/long-card", sha, max_bytes=10**9)
    assert fetched.base_model is None
    assert MODEL_CARD not in fake_hub.downloads("acme/long-card")
    assert MODEL_CARD not in [f["name"] for f in fetched.files]


def test_a_repository_without_a_card_has_no_base(tmp_path, fake_hub):
    sha = fake_hub.add_repo("acme/no-card", make_checkpoint(tmp_path / "m"))
    fetched = hub.fetch_hub("acme/no-card", sha, max_bytes=10**9)
    assert fetched.base_model is None and fake_hub.downloads("acme/no-card")


def test_a_local_folder_is_read_from_its_own_card(tmp_path):
    folder = make_checkpoint(tmp_path / "m", extra={MODEL_CARD: _card(f"base_model: {BASE}")})
    fetched, _ = local.fetch_local(folder, max_bytes=10**9)
    assert fetched.base_model == BASE
    assert MODEL_CARD in [f["name"] for f in fetched.files]
    # A card linking out of the folder is neither read nor hashed.
    outside = tmp_path / "outside.md"
    outside.write_bytes(_card(f"base_model: {BASE}"))
    (folder / MODEL_CARD).unlink()
    (folder / MODEL_CARD).symlink_to(outside)
    fetched, _ = local.fetch_local(folder, max_bytes=10**9)
    assert fetched.base_model is None
    assert MODEL_CARD not in [f["name"] for f in fetched.files]


def test_the_hub_search_reads_a_listing_s_base_by_the_same_rule(tmp_path, fake_hub):
    model = make_checkpoint(tmp_path / "m")
    fake_hub.add_repo("acme/ft", model, base_model=BASE)
    fake_hub.add_repo("acme/merge", model, base_model=BASE)
    fake_hub.repos["acme/merge"].base_model = ["acme/a", "acme/b"]  # its listing's cardData
    fake_hub.add_repo("acme/odd", model, base_model=BASE)
    fake_hub.repos["acme/odd"].base_model = "../etc/passwd"
    found = {
        f.model_id: f.base_model
        for f in pinning.search_models(
            author="acme", task=None, library=None, base_model=None, sort=None, limit=10
        )
    }
    assert found == {"acme/ft": BASE, "acme/merge": None, "acme/odd": None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (BASE, BASE),
        ([BASE], BASE),
        ([BASE, "acme/other"], None),
        ([], None),
        ("a" * 200, None),
        ("acme/base\nrm -rf /", None),
        (None, None),
        ({"base_model": BASE}, None),
    ],
)
def test_one_rule_for_a_cards_base_model(value, expected):
    assert pinning.base_model_of(value) == expected
