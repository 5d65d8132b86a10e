"""The `/api` blueprint: every endpoint, one module per resource.

The blueprint is `routes.common.api`; each module registers its views on it
(accounts, vehicles, lots, spots, tickets, health, docs), and importing this
package imports them all. Views query the models directly. Search for the URL
(e.g. `"/parking-lots/<int:lot_id>/report"`) to find a view.
Each view is declared with `@endpoint(...)` (endpoints.py): who may call it,
its body and query models and its answer (schemas.py). The view receives the
validated `body` / `query` and does only the work; the declaration is also its
entry in the OpenAPI document.

Concurrency: the rules that must hold under concurrent requests (one open
ticket per spot and per vehicle, one checkout per ticket) are guaranteed by
the partial unique indexes in models.py. Views write with conditional
UPDATE statements (`... WHERE status = 'available'`), so a row lock taken by
the first writer makes every other writer see the new state and back off;
an IntegrityError from the indexes is the last line and maps to the
documented 4xx.

Lock order: a transaction that changes spots (booking, auto-assignment,
checkout, adding spots, taking one out of service, archiving) takes its lot's
row lock first (`FOR NO KEY UPDATE`; on SQLite, the database's write lock),
then spot rows, then tickets. One order everywhere means no deadlock, and it
makes archiving agree with the rest: an archived lot never has a free spot.
The lot counters' triggers (migration 0003) write the same lot row, so writes
at one lot were already serialised on it; taking the lock first costs no
statement (it rides on the read each of them starts with).
"""

from endpoints import devices_only_at_the_gate
from ratelimit import limiter
from routes import (  # noqa: F401  (each registers its views)
    accounts,
    availability,
    docs,
    gate,
    health,
    lots,
    permits,
    reservations,
    spots,
    staff,
    tickets,
    vehicles,
    webhooks,
)
from routes.accounts import hash_password
from routes.common import api
from tokens import issue_tokens

# A gate device's key is accepted by the gate's endpoints only (403 anywhere else).
api.before_request(devices_only_at_the_gate)

__all__ = ["api", "hash_password", "issue_tokens", "limiter"]
