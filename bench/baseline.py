"""The bare baseline: the smallest Flask app, served with the same gunicorn
settings as the API, so every scenario is reported relative to it.

    gunicorn -c gunicorn.conf.py --pythonpath bench baseline:app
"""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return {"service": "baseline", "status": "ok"}
