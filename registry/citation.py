"""How to cite swreg and what its index is licensed under: the words the JSON index's `meta`
and every verified coordinate carry, and CITATION.cff (tests/registry/index/test_citation.py
keeps them in step)."""

# The project's licence (LICENSE, pyproject.toml), as an SPDX identifier; it covers the index
# swreg writes. Each published coordinate names its own sources in its provenance.
LICENSE = "MIT"
TITLE = "swreg: a registry of super weights in large language models"
AUTHORS = "The swreg contributors"


def swreg_citation(version: str) -> str:
    """The citation of coordinates swreg itself verified, by the detector version that did."""
    return f"{AUTHORS}. {TITLE}, version {version}"


def is_swreg_citation(citation: str | None, version: str | None) -> bool:
    """Whether a document's citation is the one swreg computes (never stored: derived from the
    detector version on every read, so a re-analysis cites its own version)."""
    return citation is not None and version is not None and citation == swreg_citation(version)


def index_citation(version: str) -> str:
    """How to cite an index document: swreg at the version that wrote it, and each coordinate's
    own sources."""
    return (
        f"{swreg_citation(version)} (CITATION.cff). Coordinates stated by others cite their "
        "sources too: each coordinate's provenance lists them; published ones come from Yu, Wang, "
        "Shan, Reed, Wan. The Super Weight in Large Language Models. arXiv:2411.07191 (2024)."
    )
