"""Webhook delivery: Standard Webhooks signing, the SSRF guard and the worker.

Deliveries follow the Standard Webhooks specification (standardwebhooks.com):
a JSON POST of `{type, timestamp, data}` with the headers `webhook-id` (one
per event and webhook, the same on every retry, so receivers can drop
duplicates), `webhook-timestamp` (unix seconds of this attempt) and
`webhook-signature` (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`,
keyed by the base64-decoded part of the webhook's `whsec_` secret). Any
receiver can verify them with the specification's libraries.

The worker (`flask deliver-events`; `--once` for one pass) does two things,
each in short transactions, so several workers can run side by side:

1. Fan-out: events not yet dispatched (the outbox, events.py) are taken with
   FOR UPDATE SKIP LOCKED; each gets one delivery per webhook subscribed to
   its type, and is marked dispatched, in one transaction.
2. Delivery: due deliveries are claimed with FOR UPDATE SKIP LOCKED, and the
   claim itself (attempts + 1, next_attempt_at pushed a lease ahead) is
   committed before anything is sent, so no other worker takes them while
   this one sends (a send is cut off after TIMEOUT, well within the lease of
   six times that). The
   result is then recorded: a 2xx is `delivered`; anything else (another
   status, a redirect, which is never followed, a timeout, a refused
   connection) is retried after an exponential backoff with jitter, for up
   to MAX_AGE after the event, then `failed`.

At least once: a worker that dies mid-delivery leaves the claim to expire
(the lease), and the delivery is sent again with the same webhook-id. A result
is recorded only by the claim that sent it (the attempt count must still
match), so a late worker never overwrites a newer attempt.

SSRF guard (check_url): https only, except http to localhost under debug or
testing; the host is resolved and every address must be public (not
private, loopback, link-local, multicast, reserved or unspecified) unless
WEBHOOK_ALLOWED_HOSTS names the host. It is checked when a webhook is
created and again at every send, and the connection goes to the address
that was checked (no second lookup an attacker's DNS could answer
differently).
"""

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import random
import secrets
import signal
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import insert, select, update

from database import bounded, is_database_fault, run
from events import PING, now
from models import Event, Webhook, WebhookDelivery, db

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
TIMEOUT = 10.0  # seconds for a whole attempt (WEBHOOK_TIMEOUT_SECONDS)
# A claimed delivery is not due again for LEASE_FACTOR times the timeout
# (60 s): far longer than its attempt can take.
LEASE_FACTOR = 6
MAX_AGE = timedelta(hours=24)  # retried for this long after the event, then `failed`
BACKOFF_FIRST, BACKOFF_CAP = 10.0, 3600.0  # seconds: 10, 20, 40, ... at most an hour
DNS_TIMEOUT = 5.0
USER_AGENT = "parking-lot-api-webhooks/1"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


# ---------------------------------------------------------------------------
# Signing (Standard Webhooks)
# ---------------------------------------------------------------------------


def new_secret() -> str:
    """A `whsec_` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(16)


# ---------------------------------------------------------------------------
# Where a webhook may point (the SSRF guard)
# ---------------------------------------------------------------------------


class UrlRefused(ValueError):
    """The URL may not receive webhooks; the message says why (a 400)."""


@dataclass(frozen=True, slots=True)
class Target:
    https: bool
    host: str
    port: int
    path: str  # with the query string
    address: str  # the checked address to connect to


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses, within DNS_TIMEOUT (tests replace this)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=DNS_TIMEOUT)
        except (OSError, FutureTimeout, UnicodeError):
            return []
    return list(dict.fromkeys(info[4][0] for info in infos))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> Target:
    """The URL's target if webhooks may be sent there, else UrlRefused."""
    config = current_app.config
    local_allowed = config["DEBUG"] or config["TESTING"]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("url must be a valid URL") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise UrlRefused("url must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("url must not contain a user name or password")
    local = host in LOCAL_HOSTS and local_allowed
    if parts.scheme == "http" and not local:
        raise UrlRefused("url must be https (http is allowed only for localhost in development)")
    https = parts.scheme == "https"
    port = port or (443 if https else 80)
    addresses = resolve(host, port)
    if not addresses:
        raise UrlRefused("url host cannot be resolved")
    allowed = {name.lower() for name in config["WEBHOOK_ALLOWED_HOSTS"]}
    if not (local or host in allowed) and not all(_public(a) for a in addresses):
        raise UrlRefused(
            "url must not resolve to a private, loopback or link-local address "
            "(WEBHOOK_ALLOWED_HOSTS lists exceptions)"
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(https, host, port, path, addresses[0])


# ---------------------------------------------------------------------------
# One HTTP attempt
# ---------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """No HTTP answer (refused, timed out, TLS failure, URL refused)."""


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float = TIMEOUT) -> int:
    """POST to the checked address; the answer's status. Redirects are not
    followed; the whole attempt is cut off after `timeout` seconds."""
    if target.https:
        conn = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)

    def connect_checked(_address, timeout=timeout, source_address=None):
        # The address that passed the guard; TLS still checks the certificate
        # against the host name (and SNI names it).
        return socket.create_connection((target.address, target.port), timeout, source_address)

    conn._create_connection = connect_checked

    def cut_off():
        if conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, cut_off)
    watchdog.daemon = True
    watchdog.start()
    started = time.monotonic()
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(1024)  # the body is not used; a little is read for a clean close
        return response.status
    except (OSError, http.client.HTTPException) as error:
        if time.monotonic() - started >= timeout:
            raise DeliveryFailed(f"Timed out after {timeout:g} s") from None
        raise DeliveryFailed(f"{type(error).__name__}: {error}"[:255]) from None
    finally:
        watchdog.cancel()
        conn.close()


def delivery_timeout() -> float:
    return float(current_app.config.get("WEBHOOK_TIMEOUT_SECONDS", TIMEOUT))


def body_of(event_type: str, created_at: datetime, data: dict) -> bytes:
    payload = {"type": event_type, "timestamp": created_at.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def headers_for(secret: str, message_id: str, body: bytes) -> dict[str, str]:
    # The real time, whatever the app's clock: receivers check it against theirs.
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def backoff(attempts: int) -> timedelta:
    """Exponential with jitter: between half and all of 10 s * 2^(attempts-1), capped."""
    delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** min(attempts - 1, 30))
    return timedelta(seconds=delay / 2 + random.uniform(0, delay / 2))


# ---------------------------------------------------------------------------
# The worker's steps
# ---------------------------------------------------------------------------

UNDISPATCHED = (
    select(Event.id, Event.type)
    .where(Event.dispatched_at.is_(None))
    .order_by(Event.id)
    .with_for_update(skip_locked=True)
)


def dispatch(limit: int = 100) -> int:
    """Fan out up to `limit` undispatched events; how many."""
    events = run(UNDISPATCHED.limit(limit)).all()
    if not events:
        db.session.rollback()
        return 0
    at = now()
    hooks = run(select(Webhook.id, Webhook.events)).all()
    rows = [
        {
            "webhook_id": hook.id,
            "event_id": event_row.id,
            "message_id": new_message_id(),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": at,
            "created_at": at,
        }
        for event_row in events
        for hook in hooks
        if event_row.type in hook.events
    ]
    if rows:
        run(insert(WebhookDelivery), rows)
    run(
        update(Event)
        .where(Event.id.in_([e.id for e in events]))
        .values(dispatched_at=at)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return len(events)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    attempts: int
    message_id: str
    created_at: datetime
    url: str
    secret: str
    event_type: str
    event_created_at: datetime
    data: dict


def claim(limit: int = 1, delivery_id: int | None = None) -> list[Claimed]:
    """Claim due deliveries (or one given delivery) and commit the claim. The
    worker claims one at a time: each claim's lease covers one attempt, and
    several workers share the queue delivery by delivery."""
    at = now()
    due = select(WebhookDelivery.id).where(WebhookDelivery.status == "pending")
    if delivery_id is None:
        due = due.where(WebhookDelivery.next_attempt_at <= at).order_by(
            WebhookDelivery.next_attempt_at
        )
    else:
        due = due.where(WebhookDelivery.id == delivery_id)
    due = due.limit(limit).with_for_update(skip_locked=True)
    ids = [
        row.id
        for row in run(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due.scalar_subquery()))
            .values(
                attempts=WebhookDelivery.attempts + 1,
                last_attempt_at=at,
                next_attempt_at=at + timedelta(seconds=LEASE_FACTOR * delivery_timeout()),
            )
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        )
    ]
    if not ids:
        db.session.rollback()
        return []
    rows = run(
        select(
            WebhookDelivery.id,
            WebhookDelivery.attempts,
            WebhookDelivery.message_id,
            WebhookDelivery.created_at,
            Webhook.url,
            Webhook.secret,
            Event.type,
            Event.created_at.label("event_created_at"),
            Event.data,
        )
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.id)
    ).all()
    db.session.commit()
    return [Claimed(*row) for row in rows]


def attempt(delivery: Claimed) -> tuple[int | None, str | None]:
    """Send once: (HTTP status or None, error or None); never raises."""
    body = body_of(delivery.event_type, delivery.event_created_at, delivery.data)
    headers = headers_for(delivery.secret, delivery.message_id, body)
    try:
        status = post(check_url(delivery.url), body, headers, timeout=delivery_timeout())
    except (UrlRefused, DeliveryFailed) as error:
        return None, str(error)[:255]
    return status, None if 200 <= status < 300 else f"HTTP {status}"


def record(delivery: Claimed, status: int | None, error: str | None) -> None:
    """Write the attempt's result, if the delivery is still this claim's."""
    at = now()
    values: dict = {"response_status": status, "last_error": error}
    if error is None:
        values.update(status="delivered", delivered_at=at, next_attempt_at=None)
    else:
        retry_at = at + backoff(delivery.attempts)
        if retry_at > delivery.created_at + MAX_AGE:
            values.update(status="failed", next_attempt_at=None)
        else:
            values["next_attempt_at"] = retry_at
    run(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.attempts == delivery.attempts,
            WebhookDelivery.status == "pending",
        )
        .values(values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def deliver(delivery: Claimed) -> bool:
    status, error = attempt(delivery)
    record(delivery, status, error)
    return error is None


def ping(webhook_id: int) -> int:
    """Queue a `ping` for one webhook (committed); the delivery's id."""
    at = now()
    event_id = run(
        insert(Event)
        .values(type=PING, data={"webhook_id": webhook_id}, created_at=at, dispatched_at=at)
        .returning(Event.id)
    ).scalar_one()
    delivery_id = run(
        insert(WebhookDelivery)
        .values(
            webhook_id=webhook_id,
            event_id=event_id,
            message_id=new_message_id(),
            status="pending",
            attempts=0,
            next_attempt_at=at,
            created_at=at,
        )
        .returning(WebhookDelivery.id)
    ).scalar_one()
    db.session.commit()
    return delivery_id


# ---------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------

STATEMENT_MS, LOCK_MS = 5000, 2000
MAX_ROUNDS = 1000  # bound on the loops of one pass


def run_pass() -> tuple[int, int, int]:
    """Fan out what is undispatched, then send what is due now, each due
    delivery at most once: (events dispatched, delivered, not delivered)."""
    dispatched = delivered = failed = 0
    with bounded(STATEMENT_MS, LOCK_MS):
        for _ in range(MAX_ROUNDS):
            count = dispatch()
            dispatched += count
            if count == 0:
                break
        for _ in range(MAX_ROUNDS):
            batch = claim()
            if not batch:
                break
            for delivery in batch:
                if deliver(delivery):
                    delivered += 1
                else:
                    failed += 1
    return dispatched, delivered, failed


def run_forever(poll_seconds: float = 1.0) -> None:
    """Passes until SIGTERM or SIGINT; a database fault is logged and retried."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("Delivering events (every %.1f s when idle)", poll_seconds)
    while not stop.is_set():
        try:
            dispatched, delivered, failed = run_pass()
        except Exception as error:
            if not is_database_fault(error):
                raise
            db.session.rollback()
            log.warning("Database unavailable, retrying: %s", error)
            stop.wait(max(poll_seconds, 2.0))
            continue
        if dispatched or delivered or failed:
            log.info("dispatched %d, delivered %d, failed %d", dispatched, delivered, failed)
        else:
            stop.wait(poll_seconds)
