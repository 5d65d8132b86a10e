"""Gunicorn settings: bind to Render's $PORT, workers from WEB_CONCURRENCY."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Render's proxy keeps connections open; keep-alive a little longer than its idle timeout.
keepalive = 5
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "1") == "1" else None
forwarded_allow_ips = "*"
