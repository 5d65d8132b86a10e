#!/usr/bin/env bash
# The README's tour (docs/tour.sh) against `make run`, as a new user runs it:
# SQLite, debug, migrated and seeded by make, on a free local port. The
# database is a temporary file (DATABASE_URL), so the developer's
# instance/parking.db is left alone. The tour runs twice, as a reader who
# pastes it again would. The server is stopped and the file deleted on every
# exit. (.ci/live.sh runs the same tour against gunicorn on PostgreSQL.)
#
# Usage: bash .ci/tour.sh   (make run creates .venv if needed)
set -euo pipefail
cd "$(dirname "$0")/.."

WORK="$(mktemp -d -t parking-tour.XXXXXX)"
SERVER_PID=""

cleanup() {
    local status=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        # make, flask and its reloader child share the job's process group.
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -s "$WORK/server.log" ]; then
        echo "== last lines of the make run log" >&2
        tail -n 40 "$WORK/server.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT/api"
echo "== tour: make run on $BASE, SQLite in $WORK (${SECONDS}s)"
# Job control gives the background job its own process group, stopped as one.
set -m
DATABASE_URL="sqlite:///$WORK/parking.db" PORT="$PORT" make run >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
set +m

ready=""
for _ in $(seq 1 240); do  # make run may first install the runtime packages
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "FATAL: make run exited" >&2
        exit 1
    fi
    if curl -s -o /dev/null --max-time 2 "$BASE/test-db"; then
        ready=1
        break
    fi
    sleep 0.5
done
[ -n "$ready" ] || { echo "FATAL: $BASE/test-db did not answer in time" >&2; exit 1; }

for run in 1 2; do
    echo "== tour: run $run (${SECONDS}s)"
    BASE_URL="$BASE" timeout 120 bash docs/tour.sh >"$WORK/tour.log" 2>&1 ||
        { cat "$WORK/tour.log" >&2; exit 1; }
    tail -n 1 "$WORK/tour.log"
done
echo "tour on make run passed in ${SECONDS}s"
