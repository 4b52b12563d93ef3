"""The config bomb of issue 19 against a real `python -m workers.worker`.

A Hub repository (the test suite's fake Hub, over real HTTP) whose config.json says
`num_hidden_layers: 1000000000`, a worker with a 3 GiB memory limit, a SQLite registry. Prints
the job's state and error, the analysis child's peak as the worker logged it, and the largest
peak resident set among the worker and its children. Run from the checkout:

    python tools/config_bomb_attack.py
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())

from huggingface_hub import constants  # noqa: E402

from registry import migrate  # noqa: E402
from registry.database import make_engine, make_sessionmaker  # noqa: E402
from registry.jobs import service  # noqa: E402
from registry.jobs.models import Job  # noqa: E402
from tests.fake_hub import FakeHub  # noqa: E402
from workers.fixtures.planted import build_planted_model  # noqa: E402

LAYERS = 10**9
MEMORY_LIMIT_BYTES = 3 * 1024**3
WORKER_TIMEOUT_SECONDS = 300


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="swreg-bomb-"))
    planted = build_planted_model("llama", root / "planted").path
    bomb = root / "bomb"
    shutil.copytree(planted, bomb)
    config = json.loads((bomb / "config.json").read_text())
    config["num_hidden_layers"] = LAYERS
    (bomb / "config.json").write_text(json.dumps(config))
    url = f"sqlite:///{root / 'registry.db'}"
    migrate.upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    cache = root / "hf-cache"
    with FakeHub() as hub:
        hub.add_repo("attacker/bomb", bomb)
        constants.ENDPOINT, constants.HF_HUB_OFFLINE = hub.url, False
        constants.HF_HUB_CACHE = str(cache)
        constants.HUGGINGFACE_CO_URL_TEMPLATE = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        job_id = service.submit(sessions, "attacker/bomb").job.id
        env = {
            **os.environ,
            "SWREG_DATABASE_URL": url,
            "HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_CACHE": str(cache),
            "SWREG_WORKER_MEMORY_LIMIT_BYTES": str(MEMORY_LIMIT_BYTES),
        }
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "workers.worker", "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_SECONDS,
        )
        elapsed = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with sessions() as session:
        job = session.get(Job, job_id)
        print(
            f"worker exit {run.returncode} after {elapsed:.1f} s; job {job.state}, "
            f"attempt {job.attempts} of {job.max_attempts}"
        )
        print(f"last_error: {job.last_error}")
    print(f"largest peak RSS among the worker and its children: {peak_kib / 1024:.0f} MB")
    for line in run.stderr.splitlines():
        if "peak memory" in line:
            print(line)


if __name__ == "__main__":
    main()
