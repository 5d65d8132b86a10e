# Two commands on a fresh machine with Python 3.11+:
#   make run   - create .venv, install, migrate, seed, serve http://127.0.0.1:5000 (SQLite default)
#   make test  - create .venv and run the whole test suite
# TEST_DATABASE_URL=postgresql://... make test runs the same suite on PostgreSQL.
# PORT=5001 make run serves on another port.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
STAMP := $(VENV)/.dev-installed
export FLASK_APP := app.py
PORT ?= 5000

# `make run` checks the port before it migrates or seeds anything. SO_REUSEADDR
# as the server itself binds: a port left in TIME_WAIT counts as free.
define PORT_IS_FREE
import socket, sys
port = sys.argv[1]
if not port.isdigit() or not 0 < int(port) < 65536:
    sys.exit(f"PORT must be a port number (1-65535), not {port!r}")
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(port)))
    except OSError:
        sys.exit(f"Port {port} is in use: stop what listens there, or run on another: PORT={int(port) + 1} make run")
endef
export PORT_IS_FREE

# Printed before serving: the limit the README's login examples meet.
define AUTH_LIMIT_LINE
from config import DevelopmentConfig
print(f"Login and register allow {DevelopmentConfig.RATELIMIT_AUTH} per client IP and per e-mail under make run (RATELIMIT_AUTH)")
endef
export AUTH_LIMIT_LINE

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
	@$(BIN)/python -c "$$PORT_IS_FREE" "$(PORT)"
	FLASK_DEBUG=1 $(BIN)/flask db upgrade
	FLASK_DEBUG=1 $(BIN)/python seed.py
	@FLASK_DEBUG=1 $(BIN)/python -c "$$AUTH_LIMIT_LINE"
	FLASK_DEBUG=1 $(BIN)/flask run --host 127.0.0.1 --port $(PORT)

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
