#!/usr/bin/env bash
# The README's "Using the API" tour, as one script: every step is a curl the
# README shows, in the same order, and each checks its status code (a wrong
# one prints the API's error and stops the tour). Ids and tokens are taken
# from the answers, and names carry a suffix of this run, so the tour runs
# again and again against one server.
#
# Usage: bash docs/tour.sh                     (after `make run`)
#        BASE_URL=http://127.0.0.1:5001/api bash docs/tour.sh
# Needs curl and python3. CI runs it against `make run` and gunicorn (.ci/tour.sh).
set -euo pipefail

B="${BASE_URL:-http://127.0.0.1:5000/api}"

# api CURL-ARGS...: curl with a JSON body type, the status code on a last line.
api() { curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' "$@"; }
# check STATUS: the answer must have that status; prints its body, or else the
# API's error (on stderr) and fails.
check() { python3 -c '
import json, sys
*body, status = sys.stdin.read().split("\n")
body = "\n".join(body)
if status != sys.argv[1]:
    try:
        error = json.loads(body)["error"]
    except Exception:
        error = body[:300] or "no answer: is the server running?"
    sys.exit(f"HTTP {status} (expected {sys.argv[1]}): {error}")
print(body)' "$1"; }
# field NAME: one field of the JSON body on stdin (0.id: the first item's id).
field() { python3 -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value[int(key)] if isinstance(value, list) else value[key]
print(value)' "$1"; }

RUN="$(date +%s)$$"            # a suffix of this run: names and plates stay unique
EMAIL="driver$RUN@example.com"

echo "== health"
api "$B/test-db" | check 200

echo "== accounts: register, login, me, refresh"
api -X POST "$B/register" \
    -d "{\"username\": \"driver$RUN\", \"email\": \"$EMAIL\", \"password\": \"password123\"}" | check 201
LOGIN=$(api -X POST "$B/login" -d "{\"email\": \"$EMAIL\", \"password\": \"password123\"}" | check 200)
T=$(echo "$LOGIN" | field token)
REFRESH=$(echo "$LOGIN" | field refresh_token)
api "$B/me" -H "Authorization: Bearer $T" | check 200
PAIR=$(api -X POST "$B/token/refresh" -H "Authorization: Bearer $REFRESH" | check 200)
T=$(echo "$PAIR" | field token)
REFRESH=$(echo "$PAIR" | field refresh_token)

echo "== vehicles: add two, list, edit one, delete the other"
VEHICLE=$(api -X POST "$B/vehicles" -H "Authorization: Bearer $T" \
    -d "{\"plate_number\": \"kt  ${RUN: -10}\", \"type\": \"SUV\"}" | check 201 | field id)
SECOND=$(api -X POST "$B/vehicles" -H "Authorization: Bearer $T" \
    -d "{\"plate_number\": \"KU ${RUN: -10}\"}" | check 201 | field id)
api "$B/vehicles" -H "Authorization: Bearer $T" | check 200
api -X PATCH "$B/vehicles/$VEHICLE" -H "Authorization: Bearer $T" -d '{"type": "Sedan"}' | check 200
api -X DELETE "$B/vehicles/$SECOND" -H "Authorization: Bearer $T" | check 200

echo "== lots (as the seeded admin): create a lot, add spots, list"
A=$(api -X POST "$B/login" -d '{"email": "admin@example.com", "password": "adminpass"}' | check 200 | field token)
LOT=$(api -X POST "$B/parking-lots" -H "Authorization: Bearer $A" \
    -d "{\"name\": \"Lot $RUN\", \"location\": \"Westlands\", \"spot_count\": 3, \"spot_prefix\": \"P\",
         \"timezone\": \"Africa/Nairobi\", \"hourly_rate\": 20000, \"billing_increment_minutes\": 30,
         \"grace_minutes\": 10, \"daily_max\": 150000}" | check 201 | field lot_id)
api -X POST "$B/parking-lots/$LOT/spots" -H "Authorization: Bearer $A" \
    -d '{"count": 2, "prefix": "EV", "kind": "ev"}' | check 201
api "$B/parking-lots" -H "Authorization: Bearer $T" | check 200
api "$B/parking-lots/$LOT" -H "Authorization: Bearer $T" | check 200

echo "== spots: free EV spots of the new lot"
SPOT=$(api "$B/spots?lot_id=$LOT&status=available&kind=ev&per_page=20" | check 200 | field 0.id)

echo "== tickets: book, read, quote, check out"
TICKET=$(api -X POST "$B/tickets" -H "Authorization: Bearer $T" \
    -d "{\"vehicle_id\": $VEHICLE, \"parking_spot_id\": $SPOT}" | check 201 | field ticket_id)
api "$B/tickets/$TICKET" -H "Authorization: Bearer $T" | check 200
api "$B/tickets?active=true" -H "Authorization: Bearer $T" | check 200
api "$B/parking-lots/$LOT/quote?minutes=125" -H "Authorization: Bearer $T" | check 200
api -X PATCH "$B/checkout/$TICKET" -H "Authorization: Bearer $T" | check 200

echo "== report (admin): today in the lot"
TODAY=$(date +%F)
api "$B/parking-lots/$LOT/report?from=$TODAY&to=$TODAY" -H "Authorization: Bearer $A" | check 200

echo "== password change, then logout"
PAIR=$(api -X PATCH "$B/me/password" -H "Authorization: Bearer $T" \
    -d '{"current_password": "password123", "new_password": "a-better-passphrase"}' | check 200)
T=$(echo "$PAIR" | field token)
REFRESH=$(echo "$PAIR" | field refresh_token)
api -X POST "$B/logout" -H "Authorization: Bearer $T" -d "{\"refresh_token\": \"$REFRESH\"}" | check 200
api "$B/me" -H "Authorization: Bearer $T" | check 401
# The new password works (the README's reference sections start from here).
T=$(api -X POST "$B/login" -d "{\"email\": \"$EMAIL\", \"password\": \"a-better-passphrase\"}" | check 200 | field token)

echo "tour passed"
