"""Webhooks (admin): /webhooks, /webhooks/<id>, its test ping and its deliveries.

Delivery itself (signing, the SSRF guard, retries) is webhooks.py's; the
outbox the events come from is events.py's.
"""

from flask import jsonify
from flask_jwt_extended import current_user
from sqlalchemy import delete, select

import schemas
import webhooks
from endpoints import ADMIN, endpoint
from models import Event, Webhook, WebhookDelivery, db
from pagination import paginate
from routes.common import api, iso, now
from validation import ApiError

NOT_FOUND = "Webhook not found"
URL_ERRORS = (
    "url is required, url must be an https URL (http only for localhost in development), "
    "must not contain a user name or password, cannot be resolved, or resolves to a "
    "private, loopback or link-local address; events must be a list of event types"
)


def webhook_to_dict(hook: Webhook) -> dict:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "description": hook.description,
        "created_at": iso(hook.created_at),
    }


def delivery_to_dict(delivery: WebhookDelivery, event_type: str) -> dict:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": event_type,
        "message_id": delivery.message_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "response_status": delivery.response_status,
        "last_error": delivery.last_error,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "last_attempt_at": iso(delivery.last_attempt_at),
        "delivered_at": iso(delivery.delivered_at),
        "created_at": iso(delivery.created_at),
    }


def get_webhook(webhook_id: int) -> Webhook:
    hook = db.session.get(Webhook, webhook_id)
    if hook is None:
        raise ApiError(404, NOT_FOUND)
    return hook


DELIVERIES = select(WebhookDelivery, Event.type).join(Event, Event.id == WebhookDelivery.event_id)


@api.route("/webhooks", methods=["POST"])
@endpoint(
    tag="Webhooks",
    summary="Subscribe a URL to events; the answer shows the signing secret, once (admin)",
    auth=ADMIN,
    body=schemas.WebhookCreate,
    response=(schemas.WebhookCreated, 201),
    errors={400: URL_ERRORS},
    description=(
        "Deliveries are signed as Standard Webhooks specifies (`webhook-id`, "
        "`webhook-timestamp`, `webhook-signature` with the `whsec_` secret); verify "
        "them with a Standard Webhooks library. A 2xx answer counts as delivered; "
        "anything else is retried with backoff for 24 hours."
    ),
)
def create_webhook(body: schemas.WebhookCreate):
    try:
        webhooks.check_url(body.url)
    except webhooks.UrlRefused as refused:
        raise ApiError(400, str(refused)) from None
    hook = Webhook(
        url=body.url,
        events=body.events,
        description=body.description,
        secret=webhooks.new_secret(),
        created_by=current_user.id,
        created_at=now(),
    )
    db.session.add(hook)
    db.session.commit()
    return {**webhook_to_dict(hook), "secret": hook.secret}, 201


@api.route("/webhooks", methods=["GET"])
@endpoint(
    tag="Webhooks",
    summary="List webhooks; their secrets are not shown (admin)",
    auth=ADMIN,
    query=schemas.Pagination,
    response=list[schemas.Webhook],
    paginated=True,
)
def list_webhooks(query: schemas.Pagination):
    rows, headers = paginate(select(Webhook), Webhook.id, pages=query)
    return jsonify([webhook_to_dict(row[0]) for row in rows]), 200, headers


@api.route("/webhooks/<int:webhook_id>", methods=["DELETE"])
@endpoint(
    tag="Webhooks",
    summary="Delete a webhook and its deliveries (admin)",
    auth=ADMIN,
    response=schemas.WebhookDeleted,
    errors={404: NOT_FOUND},
)
def delete_webhook(webhook_id):
    deleted = db.session.execute(delete(Webhook).where(Webhook.id == webhook_id))
    if deleted.rowcount == 0:
        raise ApiError(404, NOT_FOUND)
    db.session.commit()
    return {"message": "Webhook deleted", "webhook_id": webhook_id}


@api.route("/webhooks/<int:webhook_id>/test", methods=["POST"])
@endpoint(
    tag="Webhooks",
    summary="Send a ping to the webhook now; answers the delivery (admin)",
    auth=ADMIN,
    response=schemas.Delivery,
    errors={404: NOT_FOUND},
    description=(
        'Sends `{"type": "ping", ...}` at once (at most 10 s) and answers with the '
        "delivery: `delivered`, or `pending` with the error and the retry time (the "
        "worker retries it like any delivery)."
    ),
)
def test_webhook(webhook_id):
    get_webhook(webhook_id)
    delivery_id = webhooks.ping(webhook_id)
    for claimed in webhooks.claim(1, delivery_id=delivery_id):
        webhooks.deliver(claimed)
    delivery = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
    if delivery is None:  # the webhook was deleted meanwhile
        raise ApiError(404, NOT_FOUND)
    return delivery_to_dict(delivery, "ping")


@api.route("/webhooks/<int:webhook_id>/deliveries", methods=["GET"])
@endpoint(
    tag="Webhooks",
    summary="A webhook's deliveries, newest first: status, last answer, next retry (admin)",
    auth=ADMIN,
    query=schemas.Pagination,
    response=list[schemas.Delivery],
    paginated=True,
    errors={404: NOT_FOUND},
)
def list_deliveries(webhook_id, query: schemas.Pagination):
    get_webhook(webhook_id)
    stmt = DELIVERIES.where(WebhookDelivery.webhook_id == webhook_id)
    rows, headers = paginate(stmt, WebhookDelivery.id.desc(), pages=query)
    return jsonify([delivery_to_dict(*row) for row in rows]), 200, headers
