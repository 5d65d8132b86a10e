#!/usr/bin/env bash
# The read replica, run for real: tests/test_replica.py starts its own
# PostgreSQL primary and a streaming replica of it (initdb, pg_basebackup -R)
# on free local ports and proves the routing through the API (routed reads
# from the replica, writes and read-after-write on the primary, fallback to
# the primary when the replica is stopped, silent or lost mid-request).
# The servers live in a temporary directory; whatever happens to the test,
# every server started there is stopped and the directory deleted on exit.
#
# Usage: bash .ci/replica.sh [VENV]   (VENV defaults to .venv, with requirements-dev installed)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:-.venv}"
PY="$VENV/bin/python"
test -x "$PY" || { echo "FATAL: no Python at $PY (create the venv first: make venv)" >&2; exit 1; }
PG_BINDIR="${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n1)}"
test -x "$PG_BINDIR/initdb" || { echo "FATAL: no PostgreSQL server binaries (set PG_BINDIR)" >&2; exit 1; }
export PG_BINDIR

REPLICA_TEST_DIR="$(mktemp -d -t parking-replica.XXXXXX)"
export REPLICA_TEST_DIR
# PostgreSQL will not run as root: the test runs the servers as postgres.
if [ "$(id -u)" -eq 0 ]; then chown postgres "$REPLICA_TEST_DIR"; fi

cleanup() {
    local status=$?
    # Servers a killed test left running: stop them by their data directory.
    for pidfile in "$REPLICA_TEST_DIR"/*/*/postmaster.pid; do
        [ -e "$pidfile" ] || continue
        pid="$(head -n 1 "$pidfile")"
        kill -QUIT "$pid" 2>/dev/null || true  # SIGQUIT: immediate shutdown
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$REPLICA_TEST_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== replica: a primary and a streaming replica ($("$PG_BINDIR/postgres" --version)) (${SECONDS}s)"
timeout 300 "$PY" -m pytest -q -p no:cacheprovider -m replica tests/test_replica.py
echo "replica checks passed in ${SECONDS}s"
