"""CI: one real `flask deliver-events --once` against a local receiver.

A throwaway PostgreSQL database, migrated with `flask db upgrade`; a webhook
subscribed (through the API) to a receiver on 127.0.0.1 in this process; a
booking and a checkout; then the worker runs as its own process, and the
receiver must have got both events, each verified with the standardwebhooks
library, with the API's ticket as data. Under FLASK_DEBUG, so http to
localhost is allowed (production requires https). The database is dropped on
every exit.

Usage: .venv/bin/python .ci/webhook_check.py
"""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
DB = f"parking_webhooks_{os.getpid()}"
URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
received: list[tuple[dict, bytes]] = []


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args):
        pass


def main() -> int:
    env = {**os.environ, "DATABASE_URL": URL, "FLASK_APP": "app.py", "FLASK_DEBUG": "1"}
    env["RATELIMIT_ENABLED"] = "false"
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    subprocess.run(["createdb", *PG, DB], check=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subprocess.run([flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, timeout=120)
        os.environ.update(env)
        sys.path.insert(0, ROOT)
        from standardwebhooks import Webhook as Verifier

        from app import create_app
        from models import ParkingLot, ParkingSpot, User, Vehicle, db
        from routes import hash_password

        app = create_app()
        with app.app_context():
            admin = User(
                username="ci",
                email="ci@example.com",
                role="admin",
                password_hash=hash_password("ci-password-123"),
            )
            lot = ParkingLot(name="CI lot", location="Loopback")
            db.session.add_all([admin, lot])
            db.session.flush()
            spot = ParkingSpot(lot_id=lot.id, spot_number="C1")
            vehicle = Vehicle(plate_number="KCI 001", user_id=admin.id)
            db.session.add_all([spot, vehicle])
            db.session.commit()
            spot_id, vehicle_id = spot.id, vehicle.id
        client = app.test_client()
        token = client.post(
            "/api/login", json={"email": "ci@example.com", "password": "ci-password-123"}
        ).get_json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        hook = client.post(
            "/api/webhooks",
            json={
                "url": f"http://127.0.0.1:{server.server_port}/ci",
                "events": ["ticket.opened", "ticket.closed"],
            },
            headers=auth,
        ).get_json()
        ticket_id = client.post(
            "/api/tickets",
            json={"vehicle_id": vehicle_id, "parking_spot_id": spot_id},
            headers=auth,
        ).get_json()["ticket_id"]
        assert client.patch(f"/api/checkout/{ticket_id}", headers=auth).status_code == 200
        listed = client.get("/api/tickets", headers=auth).get_json()
        closed = next(t for t in listed if t["id"] == ticket_id)

        worker = subprocess.run(
            [flask, "deliver-events", "--once"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        print(worker.stdout.strip() or worker.stderr.strip()[-2000:])
        if worker.returncode != 0:
            return 1
        verifier = Verifier(hook["secret"])
        payloads = [verifier.verify(body, headers) for headers, body in received]
        types = sorted(p["type"] for p in payloads)
        assert types == ["ticket.closed", "ticket.opened"], types
        assert next(p for p in payloads if p["type"] == "ticket.closed")["data"] == closed
        ids = {headers["webhook-id"] for headers, _ in received}
        assert len(ids) == 2, ids
        print(f"webhook check passed: {json.dumps(types)} delivered, signatures verified")
        return 0
    finally:
        server.shutdown()
        subprocess.run(["dropdb", *PG, "--if-exists", "--force", DB], check=False)


if __name__ == "__main__":
    sys.exit(main())
