"""Reading a JSON index document offline: the file `swreg export` writes, the document
`GET /api/v1/index` serves, or the published index that ships with swreg.

The document is validated against the index's JSON Schema (the same check `swreg import` makes)
and its model revisions are parsed into the HTTP API's own shapes, so a lookup in an index file
answers exactly what the API's lookup would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.superweights.lineage import lineage_document
from registry.superweights.schemas import LineageOut, ModelLookup, RevisionOut
from workers.contract.errors import NotFound


@dataclass(frozen=True)
class IndexMeta:
    schema_version: int
    generated_at: str
    generator: str  # "name version"


# Fields an index document may leave out, as the API shows them when they are not known.
_REVISION_DEFAULTS: dict[str, Any] = {
    "architecture": None,
    "dtype": None,
    "num_layers": None,
    "weight_files": [],
    "created_at": None,
    "updated_at": None,
    "quantization_check": None,
}
_COORDINATE_DEFAULTS: dict[str, Any] = {"evidence": {}, "provenance": {}}


def _complete(revision: dict[str, Any]) -> dict[str, Any]:
    return {
        **_REVISION_DEFAULTS,
        **revision,
        "super_weights": [{**_COORDINATE_DEFAULTS, **sw} for sw in revision["super_weights"]],
    }


class Index:
    """Every model revision of one index document, looked up like the HTTP API."""

    def __init__(self, meta: IndexMeta, revisions: list[RevisionOut], source: str = "index"):
        self.meta = meta
        self.revisions = revisions
        self.source = source

    @classmethod
    def from_document(cls, document: dict[str, Any], source: str = "index") -> Index:
        """An index from a parsed document; an invalid one is refused with one line
        (`InvalidInput`) naming the first problem and its JSON pointer."""
        from registry.index.document import validate_document

        validate_document(document, source=source)
        return cls._parse(document, source)

    @classmethod
    def load(cls, path: str | Path) -> Index:
        """Read and validate an index file; a missing, unreadable or invalid file is refused
        with one line (`InvalidInput`)."""
        from registry.index.document import load_file

        return cls._parse(load_file(path), str(path))

    @classmethod
    def _parse(cls, document: dict[str, Any], source: str) -> Index:
        meta = document["meta"]
        return cls(
            IndexMeta(
                schema_version=meta["schema_version"],
                generated_at=meta["generated_at"],
                generator=f"{meta['generator']['name']} {meta['generator']['version']}",
            ),
            [RevisionOut.model_validate(_complete(m)) for m in document["models"]],
            source,
        )

    @classmethod
    def published(cls) -> Index:
        """The paper's published coordinates, as shipped with swreg."""
        from workers.contract.resources import PUBLISHED_INDEX_PATH

        return cls.load(PUBLISHED_INDEX_PATH)

    def model_ids(self) -> list[str]:
        return sorted({r.model_id for r in self.revisions})

    def lookup(self, model_id: str, revision: str | None = None) -> ModelLookup:
        """Every revision of `model_id` (or the one `revision`), as `GET /models/{id}` answers;
        `NotFound` when the index has none."""
        mine = [r for r in self.revisions if r.model_id == model_id]
        if not mine:
            raise NotFound(f"model not in {self.source}: {model_id}")
        if revision is not None:
            mine = [r for r in mine if r.revision == revision]
            if not mine:
                raise NotFound(f"model {model_id} has no revision {revision} in {self.source}")
        return ModelLookup(
            model_id=model_id,
            revisions=sorted(mine, key=lambda r: r.revision),
            lineage=self._lineage(model_id, mine),
        )

    def _lineage(self, model_id: str, mine: list[RevisionOut]) -> LineageOut:
        """The model's lineage as the registry's lookup answers it (registry.superweights
        .lineage): the bases its revisions (those answered) name, the index's models that name
        it as base."""
        own = [{"base_model": r.base_model} for r in mine]
        fine_tuned = [
            {
                "model_id": r.model_id,
                "revision": r.revision,
                "updated_at": r.updated_at,
                "lineage_check": r.lineage_check.model_dump(mode="json")
                if r.lineage_check
                else None,
            }
            for r in self.revisions
            if r.base_model == model_id
        ]
        total = len({r["model_id"] for r in fine_tuned})
        return LineageOut.model_validate(lineage_document(own, fine_tuned, total))

    def at_revision(self, revision: str) -> list[RevisionOut]:
        """Every model revision recorded at `revision` (under any model id): how a local
        directory, known only by the content hash of its weights, is found."""
        return [r for r in self.revisions if r.revision == revision]
