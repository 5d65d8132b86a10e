"""Idempotency keys: a write retried with the same `Idempotency-Key` is done once.

Phone apps on car-park networks and barrier controllers retry a write whose
answer they lost. With `Idempotency-Key: <1-255 printable characters>` on a
POST, PATCH or DELETE, the first request's answer is stored for 24 hours and a
retry gets it again (status, body and key headers, plus `Idempotent-Replayed:
true`) without the work being done twice.

Scope: keys belong to the caller, (actor_type, actor_id): a user, or a gate
device (`Authorization: Device <key>`). Writes without credentials (register,
login) and the writes whose answer carries tokens (token refresh, password
change) take no key: their answers must never sit in the database, and each is
safe to retry by itself (see README, "Idempotency keys"). `@endpoint(...,
idempotent=False)` marks the latter; the header is ignored there.

One request, three short steps (implemented once, around every view, by
endpoints.py and `register(app)`):

1. Claim, in its own transaction, before the work: INSERT ... ON CONFLICT DO
   NOTHING of the key row (`in_progress`, with a random lock token). One
   request wins; the others read the row and answer at once: the stored answer
   (`completed`), 422 for another request under the same key, or 409 "A
   request with this key is in progress".
2. The work: the view runs as usual. Its first commit also marks the row
   `committed` (a before_commit hook, same transaction), so the database
   knows whether the work happened whatever happens next.
3. The answer, after the work's commit: stored (`completed`) unless it is a
   5xx (or a 429), which releases the key for a retry, unless work was already
   committed: then the key is not released (the retry would do it twice).

A worker killed between the claim and the answer leaves an `in_progress` row.
After IDEMPOTENCY_ABANDONED_SECONDS (longer than any request can run) a retry
takes the claim over, which is safe because nothing was committed: the mark
would have been committed with the work. A `committed` row whose answer was
never stored (a crash, or the database lost right after the commit) is never
done again: a retry hears 409 "A request with this key was processed, but its
answer was lost". Should the first request still be running when its claim is
taken over, its commit finds the lock token changed and fails: the work is
done by one request only, whatever the timing.

Nothing holds a lock or session state between requests (no advisory locks,
no session-level settings), so all of this works behind PgBouncer in
transaction mode.
"""

import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, Response, current_app, g, has_request_context, request
from sqlalchemy import delete, event, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from database import run
from models import IdempotencyKey, db, utcnow
from validation import ApiError, rollback_quietly

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})
KEY_RE = re.compile(r"[\x20-\x7e]{1,255}")
TTL = timedelta(hours=24)
# Headers of the first answer that a replay repeats.
KEPT_HEADERS = ("Content-Type", "Location", "Link", "X-Total-Count", "Content-Disposition")

INVALID_KEY = "Idempotency-Key must be 1-255 printable ASCII characters"
REUSED = "Idempotency key reused with different parameters"
IN_PROGRESS = "A request with this key is in progress"
ANSWER_LOST = "A request with this key was processed, but its answer was lost"


@dataclass(slots=True)
class Claim:
    """This request's hold on its key row."""

    id: int
    token: str
    working: bool = True  # the view is running (its commits mark the row)
    marking: bool = False  # a commit with the mark is under way
    committed: bool = False  # the view committed work


def now() -> datetime:
    """The current UTC time (tests set config["CLOCK"], as for the views)."""
    return (current_app.config.get("CLOCK") or utcnow)()


def scope() -> tuple[str, int]:
    """Whose key it is: the gate device of the request, or the token's user."""
    from parking import current_actor  # parking imports the models; import late

    actor = current_actor()
    return actor.type, actor.id


def request_hash() -> str:
    """SHA-256 of the method, path with query string and body; a JSON body is
    canonicalised first, so the same object with its keys reordered matches."""
    raw = request.get_data(cache=True)
    try:
        body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError, UnicodeError):
        body = raw
    target = request.full_path if request.query_string else request.path
    return hashlib.sha256(b"\0".join([request.method.encode(), target.encode(), body])).hexdigest()


def _insert(values: dict):
    dialect = db.session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(IdempotencyKey)
        .values(values)
        .on_conflict_do_nothing(index_elements=["actor_type", "actor_id", "key"])
        .returning(IdempotencyKey.id)
    )


def begin(applies: bool) -> Response | None:
    """Before the view: claim the request's key (None: go on and do the work),
    or return the stored answer; raise 400/409/422. A no-op without the header
    or where keys do not apply (`applies` False: see the module docstring)."""
    key = request.headers.get(HEADER)
    if key is None or not applies or request.method not in WRITE_METHODS:
        return None
    if not KEY_RE.fullmatch(key):
        raise ApiError(400, INVALID_KEY)
    actor_type, actor_id = scope()
    digest = request_hash()
    abandoned = timedelta(seconds=current_app.config["IDEMPOTENCY_ABANDONED_SECONDS"])
    where = (
        IdempotencyKey.actor_type == actor_type,
        IdempotencyKey.actor_id == actor_id,
        IdempotencyKey.key == key,
    )
    for _attempt in range(3):  # bounded: each turn follows a concurrent change
        at, token = now(), secrets.token_hex(16)
        claimed = run(
            _insert(
                {
                    "actor_type": actor_type,
                    "actor_id": actor_id,
                    "key": key,
                    "request_hash": digest,
                    "state": "in_progress",
                    "lock_token": token,
                    "locked_at": at,
                    "created_at": at,
                    "expires_at": at + TTL,
                }
            )
        ).scalar()
        if claimed is not None:
            db.session.commit()
            g.idempotency = Claim(claimed, token)
            return None
        row = db.session.execute(select(IdempotencyKey).where(*where)).scalar_one_or_none()
        if row is None:
            continue  # released meanwhile (a 5xx): claim it again
        if row.expires_at <= at:
            run(delete(IdempotencyKey).where(*where, IdempotencyKey.expires_at <= at))
            continue
        if row.request_hash != digest:
            raise ApiError(422, REUSED)
        if row.state == "completed":
            db.session.rollback()
            return replay(row)
        if row.state == "in_progress" and row.locked_at <= at - abandoned:
            # Left behind by a worker that died; nothing of it was committed.
            taken = run(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.id == row.id,
                    IdempotencyKey.state == "in_progress",
                    IdempotencyKey.lock_token == row.lock_token,
                )
                .values(lock_token=token, locked_at=at)
            )
            if taken.rowcount == 1:
                db.session.commit()
                g.idempotency = Claim(row.id, token)
                return None
            continue
        if row.state == "committed" and row.locked_at <= at - abandoned:
            raise ApiError(409, ANSWER_LOST)
        raise ApiError(409, IN_PROGRESS)
    raise ApiError(409, IN_PROGRESS)


def replay(row: IdempotencyKey) -> Response:
    response = current_app.response_class(row.response_body, status=row.response_status)
    for name, value in (row.response_headers or {}).items():
        response.headers[name] = value
    response.headers[REPLAYED] = "true"
    return response


def is_replay(result) -> bool:
    return isinstance(result, Response) and result.headers.get(REPLAYED) == "true"


def finish(response: Response) -> Response:
    """After the view (after_request, errors included): store the answer, or
    release the key on a 5xx or 429 when no work was committed."""
    claim = g.pop("idempotency", None)
    if claim is None:
        return response
    claim.working = False
    mine = (IdempotencyKey.id == claim.id, IdempotencyKey.lock_token == claim.token)
    status = response.status_code
    try:
        db.session.rollback()  # whatever the view left uncommitted is not ours to keep
        if status < 500 and status != 429:
            headers = {
                name: response.headers[name] for name in KEPT_HEADERS if name in response.headers
            }
            run(
                update(IdempotencyKey)
                .where(*mine)
                .values(
                    state="completed",
                    response_status=status,
                    response_headers=headers,
                    response_body=response.get_data(),
                )
            )
        elif not claim.committed:
            run(delete(IdempotencyKey).where(*mine, IdempotencyKey.state == "in_progress"))
        db.session.commit()
    except Exception:
        # The answer goes out anyway; the row stays claimed (see the docstring).
        rollback_quietly()
        log.warning("Could not record the answer of idempotency key %s", claim.id, exc_info=True)
    return response


def _claim_of(session: Session) -> Claim | None:
    if not has_request_context() or session is not db.session():
        return None
    claim = g.get("idempotency")
    return claim if claim is not None and claim.working else None


@event.listens_for(Session, "before_commit")
def mark_committed(session: Session) -> None:
    """The view's first commit marks its key `committed` in the same transaction;
    if the claim was taken over meanwhile, the commit fails instead."""
    claim = _claim_of(session)
    if claim is None or claim.committed:
        return
    marked = session.connection().execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim.id, IdempotencyKey.lock_token == claim.token)
        .values(state="committed")
    )
    if marked.rowcount != 1:
        raise ApiError(409, IN_PROGRESS)
    claim.marking = True


@event.listens_for(Session, "after_commit")
def _marked(session: Session) -> None:
    claim = _claim_of(session)
    if claim is not None and claim.marking:
        claim.marking, claim.committed = False, True


@event.listens_for(Session, "after_rollback")
def _not_marked(session: Session) -> None:
    claim = _claim_of(session)
    if claim is not None:
        claim.marking = False


def prune() -> int:
    """Delete expired keys; how many."""
    result = db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now()))
    db.session.commit()
    return result.rowcount


def register(app: Flask) -> None:
    app.after_request(finish)
