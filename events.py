"""Events: the transactional outbox that webhooks are delivered from.

`emit(type, data)` adds an event row to the current transaction: it is
committed with the change that caused it, or rolled back with it, so there is
no event for a change that did not happen and no change without its event.
Nothing here sends anything: `flask deliver-events` (webhooks.py) fans each
event out to the webhooks subscribed to its type and delivers it.

`data` is the object as the API shows it (a ticket as GET /api/tickets/<id>
answers it, a payment as the payment endpoints do, a lot as its entry of GET
/api/availability).

Who emits what:
* ticket.opened / ticket.closed: parking.insert_ticket and parking.close_ticket
  (the app's booking and checkout, the gate's entry and exit, a reservation's
  check-in): the ticket as GET /api/tickets lists it (parking.ticket_json),
  built from what the write already holds, without reading it back.
* payment.recorded: parking.record_payment, `emit("payment.recorded",
  parking.payment_dict(payment))`.
* reservation.created / reservation.cancelled / reservation.no_show:
  `emit(type, <the reservation as the API returns it>)`.
* lot.full / lot.available: nobody in Python. A trigger on parking_lots
  (migration 0007) writes them when spots_available crosses zero, whichever
  path took the last spot or freed one.
"""

from datetime import datetime

from flask import current_app, has_app_context
from sqlalchemy import insert

from database import run
from models import Event, utcnow

EVENT_TYPES = (
    "ticket.opened",
    "ticket.closed",
    "payment.recorded",
    "reservation.created",
    "reservation.cancelled",
    "reservation.no_show",
    "lot.full",
    "lot.available",
)
# Sent by POST /api/webhooks/<id>/test only; nobody subscribes to it.
PING = "ping"
INSERT_EVENT = insert(Event)


def now() -> datetime:
    clock = current_app.config.get("CLOCK") if has_app_context() else None
    return (clock or utcnow)()


def emit(type_: str, data: dict) -> None:
    """Write an event in the current transaction (the caller commits)."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    run(INSERT_EVENT, {"type": type_, "data": data, "created_at": now()})
