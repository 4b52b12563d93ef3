"""A repository's model card (README.md) and the base model its YAML front matter names.

The card is the model author's text: it is read only when it is small (MAX_MODEL_CARD_BYTES,
judged from its listed size before a byte is fetched), its front matter is parsed by
huggingface_hub's own reader (`metadata_load`: PyYAML's safe loader, which builds plain data
and refuses every tag that would construct an object), and anything wrong with it (missing,
oversized, not UTF-8, malformed YAML, a tag, no mapping) means no base model, never a failed
job. What `base_model:` holds is then judged by `pinning.base_model_of`: one valid Hub id, or
none (a merge of several models has no single lineage).
"""

import logging
from pathlib import Path

from workers.sources.listing import RepoFile
from workers.sources.pinning import base_model_of

log = logging.getLogger("swreg.sources")

MODEL_CARD = "README.md"
# Real model cards are a few KB to some tens of KB (a licence or an evaluation table in the
# front matter); 256 KiB leaves room for those and bounds what one card costs to fetch and
# parse (PyYAML's parser is pure Python).
MAX_MODEL_CARD_BYTES = 256 * 1024


def listed_card(listing: list[RepoFile]) -> RepoFile | None:
    """The repository's top-level model card when it is small enough to read, else None."""
    for f in listing:
        if f.name == MODEL_CARD:
            if f.size > MAX_MODEL_CARD_BYTES:
                log.info("model card of %d bytes, over %d: not read", f.size, MAX_MODEL_CARD_BYTES)
                return None
            return f
    return None


def read_base_model(card: Path) -> str | None:
    """The base model the card at `card` names, or None (see the module's docstring)."""
    from huggingface_hub import metadata_load
    from yaml import YAMLError

    try:
        # Its size again: a local file may have grown since it was listed.
        if not card.is_file() or card.stat().st_size > MAX_MODEL_CARD_BYTES:
            return None
        metadata = metadata_load(card)
    except (OSError, UnicodeDecodeError, ValueError, YAMLError, RecursionError) as exc:
        # ValueError: front matter that is not a mapping; YAMLError: malformed YAML or a tag.
        log.info("model card %s not read: %s", card.name, " ".join(str(exc).split())[:200])
        return None
    if not isinstance(metadata, dict):
        return None
    return base_model_of(metadata.get("base_model"))
