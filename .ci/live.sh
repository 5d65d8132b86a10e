#!/usr/bin/env bash
# Live checks against the real server, as its clients meet it:
#   a throwaway PostgreSQL database, migrated and seeded; gunicorn on a free
#   local port; the Postman collection run by newman (any failed assertion
#   fails); the README's tour (docs/tour.sh); headless Chromium opening
#   /api/docs (.ci/browser_test.py).
# The server is stopped and the database dropped on every exit.
#
# Usage: bash .ci/live.sh [VENV]   (VENV defaults to .venv, with requirements installed)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:-.venv}"
PY="$VENV/bin/python"
PGHOST=127.0.0.1
PGPORT=5432
PGUSER=postgres
DB="parking_live_$$_$RANDOM"
WORK="$(mktemp -d -t parking-live.XXXXXX)"
SERVER_PID=""

cleanup() {
    local status=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -s "$WORK/server.log" ]; then
        echo "== last lines of the server log" >&2
        tail -n 40 "$WORK/server.log" >&2 || true
    fi
    dropdb -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" --if-exists "$DB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

test -x "$PY" || { echo "FATAL: no Python at $PY (create the venv first: make venv)" >&2; exit 1; }

echo "== live: tools (${SECONDS}s)"
# newman, pinned in package-lock.json (node_modules is git-ignored).
if [ ! -x node_modules/.bin/newman ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
# Debian's Chromium for the browser test.
if [ ! -x /usr/bin/chromium ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
fi

echo "== live: database $DB (${SECONDS}s)"
pg_isready -h "$PGHOST" -p "$PGPORT" -q || { echo "FATAL: PostgreSQL is not answering on $PGHOST:$PGPORT" >&2; exit 1; }
createdb -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" "$DB"

export DATABASE_URL="postgresql://$PGUSER@$PGHOST:$PGPORT/$DB"
export JWT_SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"
export RATELIMIT_ENABLED=false  # the collection logs in many times a minute
export WEBHOOK_ALLOWED_HOSTS=127.0.0.1  # the collection's webhook points at a closed local port
export FLASK_APP=app.py
unset FLASK_DEBUG
"$VENV/bin/flask" db upgrade
"$PY" seed.py

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
echo "== live: gunicorn on $BASE (${SECONDS}s)"
# gunicorn.conf.py binds 0.0.0.0:$PORT; --bind keeps this run on the loopback only.
PORT="$PORT" WEB_CONCURRENCY=2 "$VENV/bin/gunicorn" -c gunicorn.conf.py --bind "127.0.0.1:$PORT" --no-control-socket \
    app:app >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

ready=""
for _ in $(seq 1 60); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "FATAL: gunicorn exited" >&2
        exit 1
    fi
    if "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$BASE/api/test-db" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.5
done
[ -n "$ready" ] || { echo "FATAL: $BASE/api/test-db did not answer in time" >&2; exit 1; }

echo "== live: Postman collection (newman) (${SECONDS}s)"
node_modules/.bin/newman run Parking_Lot_API_Collection.json \
    --environment Parking_Lot_API.postman_environment.json \
    --env-var "base_url=$BASE/api" \
    --reporters cli --color off --disable-unicode \
    --timeout 120000 --timeout-request 15000

echo "== live: the README's tour (docs/tour.sh) (${SECONDS}s)"
BASE_URL="$BASE/api" timeout 120 bash docs/tour.sh >"$WORK/tour.log" 2>&1 ||
    { cat "$WORK/tour.log" >&2; exit 1; }
tail -n 1 "$WORK/tour.log"

echo "== live: browser (headless Chromium opens /api/docs) (${SECONDS}s)"
timeout 180 "$PY" .ci/browser_test.py "$BASE"

echo "live checks passed in ${SECONDS}s"
