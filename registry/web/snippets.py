"""The "use it" snippets of a model page: the same coordinates over HTTP and from Python, with
this server's address, ready to paste (a test runs the Python one against a real server)."""

import json
import shlex
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from registry.paths import API_PREFIX


@dataclass(frozen=True)
class Snippet:
    http: str
    python: str


def use_it(base_url: str, model_id: str, revision: str) -> Snippet:
    base = base_url.rstrip("/")
    url = (
        f"{base}{API_PREFIX}/models/{quote(model_id, safe='/')}?{urlencode({'revision': revision})}"
    )
    python = "\n".join(
        [
            "import swreg",
            "",
            f"with swreg.Client({json.dumps(base)}) as api:",
            f"    revision = api.lookup({json.dumps(model_id)}, "
            f"revision={json.dumps(revision)}).revisions[0]",
            "for sw in revision.super_weights:",
            "    print(sw.state, sw.tensor, sw.index)",
        ]
    )
    return Snippet(http=f"curl -s {shlex.quote(url)}", python=python)
