"""The files that ship with swreg and that both the science and the registry read: the
evaluation text, the JSON index's schema, the published index and the super experts reported by
Su et al. (the repository's `data/`, installed as package data of this package)."""

from importlib.resources import files
from pathlib import Path

DATA_DIR = Path(str(files("workers.contract") / "data"))
EVAL_TEXT_PATH = DATA_DIR / "eval" / "eval_text.txt"
INDEX_SCHEMA_PATH = DATA_DIR / "index.schema.json"
PUBLISHED_INDEX_PATH = DATA_DIR / "published_index.json"
REPORTED_SUPER_EXPERTS_PATH = DATA_DIR / "reported_super_experts.json"
