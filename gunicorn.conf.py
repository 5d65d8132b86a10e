"""Gunicorn settings, read by `gunicorn app:app` (Procfile, render.yaml) from this directory.

Worker model: gevent. Each connection is a greenlet, so a client that is slow
to send its request, or that connects and sends nothing, costs a few kilobytes
and never a worker; while one request waits on PostgreSQL or Redis, the worker
serves the others. With sync workers two half-sent requests blocked both
workers for ~30 s and 200 idle connections stopped the instance; gthread holds
a pool thread for 5 s on every new connection that has not sent anything yet.
Measured with bench/slow_clients.py (bench/README.md, "Slow and idle clients";
tests/test_slow_clients.py keeps it so).

Cooperative I/O under gevent: gunicorn's gevent worker monkey-patches the
standard library before it loads the app, so sockets (Redis, HTTP), locks
(the SQLAlchemy pool), `time.sleep` and `select.select` yield to other
greenlets. psycopg2 is C code and would block the whole worker while it waits
for PostgreSQL, unless it has a wait callback: the app installs one when it
loads (database.py), which also bounds every wait on PostgreSQL.

A configuration the app would refuse (JWT_SECRET_KEY missing or weak, a
DATABASE_URL that is not a URL) stops gunicorn here, in one line and before
it logs or forks anything; a worker failing to boot would print a traceback.
"""

import os
import sys

# The app's modules sit next to this file, wherever gunicorn was started from.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402

checks.exit_on_environment_problem()

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# GUNICORN_WORKER_CLASS=sync (or gthread with GUNICORN_THREADS) is the way back
# without a code change, should gevent ever misbehave.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
# gthread only (and sync, which gunicorn turns into gthread above one thread).
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# Connections one gevent worker keeps open at once; more wait in the listen
# backlog. An idle or slow connection is a greenlet (a few KB), so this is a
# memory bound, not a throughput one: it takes 1,000 slow clients per worker
# to stop an instance, against 1 per sync worker. Requests that reach the
# database queue on the SQLAlchemy pool (config.py), not here.
worker_connections = 1000
# Seconds a worker may go without a heartbeat before the master kills it. A
# gevent worker beats from its own greenlet, so a request waiting on the
# database or on a slow client no longer counts (the database's own timeouts
# bound those); only a blocked event loop does (CPU-bound code or a call that
# does not yield: the longest here is one scrypt hash, ~0.1 s).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM (a deploy, a scale-in) requests in flight get this long to finish.
# Render sends SIGKILL 30 s after SIGTERM (maxShutdownDelaySeconds, default
# 30): stop a little earlier, so the workers exit and log on their own.
graceful_timeout = 25
# Seconds an idle keep-alive connection is kept. Under gevent it is also the
# deadline for a client to send each request's line and headers: a connection
# that sends nothing, or trickles a header, is closed after 5 s. (A request
# body has no such deadline; a stalled one holds one greenlet until the client
# or the proxy closes it.) Render's proxy reuses connections to the app.
keepalive = 5
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "1") == "1" else None
forwarded_allow_ips = "*"
