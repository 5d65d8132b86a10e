"""Gunicorn settings: bind to Render's $PORT, workers from WEB_CONCURRENCY.

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
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Render's proxy keeps connections open; keep-alive a little longer than its idle timeout.
keepalive = 5
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "1") == "1" else None
forwarded_allow_ips = "*"
