"""The OpenAPI document is the contract: schemathesis (every check, a bounded number of cases per
operation, a fixed seed) runs against the real server over HTTP on SQLite and on PostgreSQL and
must find no failure. It prints its counts (the closing lines of its report).

About 30 s per database on two cores.
"""

import re
import subprocess
import sys
from pathlib import Path

from registry.app import create_app
from registry.auth import service as auth
from registry.database import transaction
from tests.helpers import LiveServer

SCHEMATHESIS = str(Path(sys.executable).with_name("st"))
CONFIG = Path(__file__).with_name("schemathesis.toml")
# Cases per operation and phase: enough to cross every documented status, small enough to stay
# within a minute per database.
MAX_EXAMPLES = 15
SEED = 2411


def test_schemathesis_finds_no_failure(db_url, published, db_sessions, hf_cache, tmp_path):
    with transaction(db_sessions) as session:
        _, secret = auth.create_token(session, "schemathesis")
    with LiveServer(create_app(db_url)) as server:
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(CONFIG),
                "--no-color",
                "run",
                f"{server.url}/api/v1/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--workers",
                "1",
                "--header",
                f"Authorization: Bearer {secret}",
                "--request-timeout",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # its cache of crashes goes there, not into the checkout
        )
    report = result.stdout + result.stderr
    counts = re.search(r"Test cases:\s*\n\s*(.+)", report)
    print("schemathesis:", counts.group(1) if counts else report[-2000:])
    assert result.returncode == 0, report[-6000:]
    assert counts and "generated" in counts.group(1), report[-2000:]
