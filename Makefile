# swreg: `make run` sets everything up and serves the API; `make test` runs the whole suite.
# The virtualenv is built once (stamp file); later calls only check the stamp.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.swreg-installed
PYTEST_ARGS ?=

.PHONY: run test lint bench bench-cli bench-registry venv setup clean browser mutate

# torch first and pinned: the unpinned name may pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Migrate the database (SWREG_DATABASE_URL, by default a SQLite file in the user data dir) and
# load the published index; idempotent.
setup: $(STAMP)
	$(BIN)/swreg setup

# The API and one worker together on the same database. The worker runs in the background and
# gets a SIGTERM whenever `serve` exits: it finishes the job it holds (which may take minutes;
# make waits) and exits. Ctrl-C also reaches the worker itself (same process group), so there
# it gets a second signal and hands an unfinished job back to the queue at once.
run: setup
	$(BIN)/swreg worker & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(BIN)/swreg serve

test: $(STAMP) browser
	$(BIN)/pytest $(PYTEST_ARGS)

# The browser tests drive Debian's chromium package (never a downloaded browser). Installed when
# missing and apt-get can (root); otherwise those tests are skipped with the reason, except
# under SWREG_REQUIRE_BROWSER=1 (.ci/run), where they fail.
CHROMIUM ?= /usr/bin/chromium
browser:
	@[ -x $(CHROMIUM) ] || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium is not installed: the browser tests will be skipped"

# Lint, format and type checks, as configured in pyproject.toml (the same as .pre-commit-config.yaml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The registry at scale (docs/measurements.md): N generated models imported, exported, served and
# measured on SQLite, and on PostgreSQL when SWREG_BENCH_POSTGRES_URL is set. N=100000 takes hours.
BENCH_REGISTRY_MODELS ?= 1000
bench-registry: $(STAMP)
	$(BIN)/swreg bench-registry $(foreach n,$(BENCH_REGISTRY_MODELS),-n $(n)) --json bench-registry.json

# Times swreg's one-sweep job against the naive approach (minutes on two cores).
bench: $(STAMP)
	$(BIN)/swreg bench --json bench.json

# Start-up time of `swreg --help` and every command's help (a few seconds).
bench-cli: $(STAMP)
	$(BIN)/swreg bench-cli

# Mutation testing of the queue, Hub fetching, detection, validation, the index and the worker
# loop, each against its own fast SQLite-only tests; prints the score per module
# (docs/mutation.md). Slow (about 40 minutes in all on two cores), so not in CI. MUTATE_ARGS:
# e.g. "queue hub" or "--fresh worker-loop".
MUTATE_ARGS ?=
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache build/mutation
