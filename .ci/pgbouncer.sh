#!/usr/bin/env bash
# PgBouncer in transaction mode, run for real: Debian's pgbouncer on a free
# local port in front of the CI PostgreSQL (127.0.0.1:5432), and the tests in
# SLICE run through it: the session fixture drops and recreates the schema and
# runs the migrations through PgBouncer too, the cross-instance test's
# gunicorn servers connect through it, and so does every app the tests build.
# Afterwards PgBouncer's own counters must show the traffic went through it,
# and its log must hold no error. PgBouncer is stopped and the database dropped
# on every exit.
#
# Usage: bash .ci/pgbouncer.sh [VENV]   (VENV defaults to .venv, with requirements-dev installed)
# PGBOUNCER_POOL_SIZE (default 20): server connections per database and user.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests that run through PgBouncer. Add a file here to cover it too.
SLICE=(
    tests/test_cross_instance.py      # two gunicorn instances, races split between them
    tests/test_concurrency.py         # racing bookings, checkouts, auto-assignment
    tests/test_security_concurrency.py
    tests/test_autoassign.py
    tests/test_tickets.py             # booking and checkout, every documented error
    tests/test_fees_receipts.py       # checkout receipts
    tests/test_tokens.py              # refresh rotation, logout, revocation
    tests/test_auth.py
    tests/test_lot_counters.py        # the counter triggers under concurrent writers
    tests/test_idempotency.py         # keys claimed and answered in short transactions
    tests/test_webhooks.py            # the outbox and workers taking deliveries with SKIP LOCKED
    tests/test_availability.py        # the feed while cars come and go
    tests/test_reservation_concurrency.py  # racing bookings, back-to-back windows, exclusion constraints
    tests/test_gate.py                # entries, exits, payments, devices: row locks in short transactions
    tests/test_gate_concurrency.py    # simultaneous entries, exits and payments at one gate
    tests/test_faults.py              # lock and statement timeouts (SET LOCAL), terminated backends, a silent server
    tests/test_lot_races.py           # archiving a lot against bookings, checkouts and new spots
)

VENV="${1:-.venv}"
PY="$VENV/bin/python"
PGHOST=127.0.0.1
PGPORT=5432
PGUSER=postgres
POOL_SIZE="${PGBOUNCER_POOL_SIZE:-20}"
DB="parking_pgbouncer_$$"
WORK="$(mktemp -d -t parking-pgbouncer.XXXXXX)"
BOUNCER_PID=""

cleanup() {
    local status=$?
    if [ -n "$BOUNCER_PID" ] && kill -0 "$BOUNCER_PID" 2>/dev/null; then
        kill -INT "$BOUNCER_PID" 2>/dev/null || true  # SIGINT: safe shutdown
        for _ in $(seq 1 50); do kill -0 "$BOUNCER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$BOUNCER_PID" 2>/dev/null || true
        wait "$BOUNCER_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -s "$WORK/pgbouncer.log" ]; then
        echo "== last lines of the PgBouncer log" >&2
        tail -n 40 "$WORK/pgbouncer.log" >&2 || true
    fi
    dropdb -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" --if-exists "$DB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

test -x "$PY" || { echo "FATAL: no Python at $PY (create the venv first: make venv)" >&2; exit 1; }

echo "== pgbouncer: install (${SECONDS}s)"
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null; }
fi
BOUNCER="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
"$BOUNCER" --version | head -n 1

echo "== pgbouncer: database $DB on $PGHOST:$PGPORT (${SECONDS}s)"
pg_isready -h "$PGHOST" -p "$PGPORT" -q || { echo "FATAL: PostgreSQL is not answering on $PGHOST:$PGPORT" >&2; exit 1; }
createdb -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" "$DB"

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# auth_type=trust still needs the user listed in auth_file; PostgreSQL itself
# trusts local connections (as in CI).
echo "\"$PGUSER\" \"\"" >"$WORK/userlist.txt"
cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
$DB = host=$PGHOST port=$PGPORT dbname=$DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
admin_users = $PGUSER
pool_mode = transaction
; The biggest race in the slice sends 14 requests at once, and two gunicorn
; instances plus the test process hold up to ~40 client connections: every
; racing transaction gets its own server connection, and the pool stays far
; below the server's max_connections (shared with other databases).
default_pool_size = $POOL_SIZE
min_pool_size = 0
reserve_pool_size = 0
max_db_connections = $POOL_SIZE
max_client_conn = 200
; Fail fast instead of hanging when the pool is exhausted or the server is away.
query_wait_timeout = 30
server_connect_timeout = 5
server_login_retry = 1
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
log_connections = 0
log_disconnections = 0
EOF
# PgBouncer refuses to run as root: it switches to the postgres user (-u).
AS_USER=()
if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres "$WORK"
    AS_USER=(-u postgres)
fi
echo "== pgbouncer: pool_mode=transaction on 127.0.0.1:$PORT, pool $POOL_SIZE (${SECONDS}s)"
"$BOUNCER" "${AS_USER[@]}" "$WORK/pgbouncer.ini" >"$WORK/stdout.log" 2>&1 &
BOUNCER_PID=$!
ready=""
for _ in $(seq 1 50); do
    if ! kill -0 "$BOUNCER_PID" 2>/dev/null; then
        cat "$WORK/stdout.log" "$WORK/pgbouncer.log" >&2 2>/dev/null || true
        echo "FATAL: pgbouncer exited" >&2
        exit 1
    fi
    if psql -h 127.0.0.1 -p "$PORT" -U "$PGUSER" -d "$DB" -Atqc "SELECT 1" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.2
done
[ -n "$ready" ] || { echo "FATAL: pgbouncer did not answer on 127.0.0.1:$PORT" >&2; exit 1; }

echo "== pgbouncer: ${#SLICE[@]} test files through PgBouncer (${SECONDS}s)"
TEST_DATABASE_URL="postgresql://$PGUSER@127.0.0.1:$PORT/$DB" \
    timeout 1200 "$PY" -m pytest -q -p no:cacheprovider "${SLICE[@]}"

echo "== pgbouncer: what went through it (${SECONDS}s)"
# A column of a SHOW command of the admin console, for this database, by name.
admin_value() {
    psql -h 127.0.0.1 -p "$PORT" -U "$PGUSER" -d pgbouncer -AF '|' -c "$1" |
        awk -F '|' -v db="$DB" -v col="$2" '
            NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
            $1 == db && c { print $c; exit }'
}
mode="$(psql -h 127.0.0.1 -p "$PORT" -U "$PGUSER" -d pgbouncer -At -c "SHOW CONFIG" | awk -F '|' '$1 == "pool_mode" {print $2}')"
[ "$mode" = "transaction" ] || { echo "FATAL: PgBouncer pool_mode is '$mode'" >&2; exit 1; }
xacts="$(admin_value "SHOW STATS" total_xact_count)"
queries="$(admin_value "SHOW STATS" total_query_count)"
wait_us="$(admin_value "SHOW STATS" total_wait_time)"
echo "transactions: ${xacts:-0}, queries: ${queries:-0}, client wait for a server connection: $(( ${wait_us:-0} / 1000 )) ms in all"
if [ "${xacts:-0}" -lt 1000 ]; then
    echo "FATAL: PgBouncer saw ${xacts:-0} transactions; the tests did not go through it" >&2
    exit 1
fi
if grep -E " (ERROR|FATAL) " "$WORK/pgbouncer.log" >"$WORK/errors.log"; then
    echo "FATAL: PgBouncer logged errors:" >&2
    head -n 20 "$WORK/errors.log" >&2
    exit 1
fi
echo "pgbouncer checks passed in ${SECONDS}s"
