# Two commands on a fresh machine with Python 3.11+:
#   make run   - create .venv, install, migrate, seed, serve http://127.0.0.1:5000 (SQLite default)
#   make test  - create .venv and run the whole test suite
# TEST_DATABASE_URL=postgresql://... make test runs the same suite on PostgreSQL.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
STAMP := $(VENV)/.dev-installed
export FLASK_APP := app.py

.PHONY: run test lint format venv clean bench bench-scale

venv: $(STAMP)

# Runtime packages only: enough for `make run`.
$(RUNTIME): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is required (found: $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(RUNTIME)

# Runtime plus test and lint tools.
$(STAMP): $(RUNTIME) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(RUNTIME)
	FLASK_DEBUG=1 $(BIN)/flask db upgrade
	FLASK_DEBUG=1 $(BIN)/python seed.py
	FLASK_DEBUG=1 $(BIN)/flask run --host 127.0.0.1 --port 5000

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmark against a throwaway PostgreSQL database (BENCH_DATABASE_URL); see bench/README.md.
bench: $(RUNTIME)
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Cost against data size: 10,000 vs 3,000,000 tickets, one sequential client; see bench/README.md.
bench-scale: $(RUNTIME)
	$(BIN)/python bench/scale.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
