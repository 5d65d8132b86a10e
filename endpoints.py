"""`@endpoint(...)`: one declaration per view, from which the request is checked,
the view called with typed values, and the OpenAPI operation generated.

    @api.route("/tickets", methods=["POST"])
    @endpoint(
        tag="Tickets",
        summary="Book a spot (create a ticket)",
        auth=USER,
        body=schemas.TicketCreate,
        response=(schemas.TicketBooked, 201),
        errors={409: "Vehicle already parked, or No spots available"},
    )
    def create_ticket(body: schemas.TicketCreate): ...

Per request, in this order: `auth.check()` (401/403), the `limits` (Flask-Limiter
decorators that must run after authentication and before the body is read,
e.g. a per-account limit), the request's Idempotency-Key on a write
(idempotency.py: a stored answer is returned here, without the view), the
body (`body=`, a JSON object) and the query
string (`query=`) validated by their models (400 with the model's message), then
the view with `body=` / `query=` and the path ids as keyword arguments. In
TESTING mode every success answer is checked against `response` (status, a
strict and closed JSON body, the pagination headers), so the whole suite
checks that the document tells the truth.

The declaration is stored as `view.endpoint` for openapi.py, which adds the
errors every endpoint of its kind can answer: 400 with input, 413 with a body,
401/403 from `auth`, 429 unless the limiter exempts the route.

`auth` is an `Auth`: it checks the request and says how the document describes
it (security scheme, 401/403). `USER` (any bearer token), `ADMIN` and `REFRESH`
are bearer tokens; a role (`Bearer("attendant", "admin", forbidden=...)`) or
another credential (a subclass with its own scheme, e.g. a gate device's key)
is one more `Auth`, without touching the views.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property, wraps
from typing import Any

from flask import current_app, g, request
from flask_jwt_extended import current_user, verify_jwt_in_request
from pydantic import BaseModel, TypeAdapter, ValidationError

import idempotency
import parking
from schemas import validation_error
from validation import ApiError, json_body

# ---------------------------------------------------------------------------
# Who may call
# ---------------------------------------------------------------------------


class Auth:
    """A credential scheme and who may pass it."""

    scheme: str  # name in components.securitySchemes
    scheme_doc: dict  # the security scheme object

    def check(self) -> None:
        """Raise (or answer 401/403 through the error handlers) unless allowed."""
        raise NotImplementedError

    def security(self) -> list[dict]:
        return [{self.scheme: []}]

    def security_schemes(self) -> dict[str, dict]:
        return {self.scheme: self.scheme_doc}

    accepts_devices = False  # may a gate device's key call it? (see `devices_only_at_the_gate`)

    def errors(self) -> dict[int, str]:
        return {401: "Missing or invalid credentials"}


class Bearer(Auth):
    """A JWT access token (or refresh token) in `Authorization: Bearer ...`;
    with `roles`, the user row's role (not the token's claim) must be one of them."""

    scheme = "bearerAuth"
    scheme_doc = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The `token` from /api/login or /api/register",
    }

    def __init__(self, *roles: str, refresh: bool = False, forbidden: str | None = None):
        self.roles = frozenset(roles)
        self.refresh = refresh
        self.forbidden = forbidden or f"{' or '.join(sorted(roles)).capitalize()} role required"

    def check(self) -> None:
        # The JWT callbacks in app.py answer every token failure with its 401 message.
        verify_jwt_in_request(refresh=self.refresh)
        if self.roles and current_user.role not in self.roles:
            raise ApiError(403, self.forbidden)

    def errors(self) -> dict[int, str]:
        errors = {401: "Missing, malformed, expired or revoked token, or its user is gone"}
        if self.roles:
            errors[403] = self.forbidden
        return errors


USER = Bearer()
ADMIN = Bearer("admin", forbidden="Admin privileges required")
REFRESH = Bearer(refresh=True)

DEVICE_SCHEME = "deviceKey"
DEVICE_SCHEME_DOC = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "A gate device's key: `Authorization: Device <key>` "
    "(POST /api/parking-lots/{lot_id}/devices shows it once)",
}


def device_key() -> str | None:
    """The key of an `Authorization: Device <key>` header, else None."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "device" else None


class Gate(Auth):
    """The people and devices that run a lot: an attendant assigned to it, an
    admin (bearer token), or one of the lot's gate devices (`Device <key>`).

    The lot is the URL's `lot_id`; where the URL names something else (a
    ticket), the view calls parking.authorize_lot() once it knows the lot."""

    scheme = "bearerAuth"
    scheme_doc = Bearer.scheme_doc
    accepts_devices = True

    def __init__(self, devices: bool = True):
        self.accepts_devices = devices

    def check(self) -> None:
        key = device_key() if self.accepts_devices else None
        if key is not None:
            g.device = parking.authenticate_device(key)
        else:
            verify_jwt_in_request()
            if current_user.role not in ("attendant", "admin"):
                raise ApiError(403, "Attendant or admin role required")
        lot_id = (request.view_args or {}).get("lot_id")
        if lot_id is not None:
            parking.authorize_lot(parking.current_actor(), lot_id)

    def security(self) -> list[dict]:
        return (
            [{"bearerAuth": []}, {DEVICE_SCHEME: []}]
            if self.accepts_devices
            else super().security()
        )

    def security_schemes(self) -> dict[str, dict]:
        schemes = {"bearerAuth": Bearer.scheme_doc}
        if self.accepts_devices:
            schemes[DEVICE_SCHEME] = DEVICE_SCHEME_DOC
        return schemes

    def errors(self) -> dict[int, str]:
        return {
            401: "Missing, malformed, expired or revoked token; or an invalid or revoked "
            "device key",
            403: "Attendant or admin role required, or Not assigned to this lot",
        }


GATE = Gate()


def devices_only_at_the_gate() -> None:
    """Before every /api request: a device key is checked (401 when wrong or
    revoked) and accepted only by the gate's endpoints (403 anywhere else,
    public routes and bearer-token routes included)."""
    key = device_key()
    if key is None:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    spec = getattr(view, "endpoint", None)
    if spec is not None and spec.auth is not None and spec.auth.accepts_devices:
        return  # the endpoint's own check authenticates it
    parking.authenticate_device(key)
    raise ApiError(403, "Devices may only use the gate endpoints of their lot")


# ---------------------------------------------------------------------------
# The declaration
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Endpoint:
    """What openapi.py documents and the wrapper enforces for one view."""

    name: str
    tag: str
    summary: str
    description: str | None
    auth: Auth | None
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: Any  # a model, list[model], or None (content only)
    status: int
    errors: dict[int, str | tuple]  # description, or (model, description) for a richer body
    paginated: bool
    content: dict[str, str]  # other media types of the success answer: type -> description
    path: dict[str, dict] = field(default_factory=dict)  # non-id path parameters' schemas
    # Writes take an Idempotency-Key (idempotency.py) when the caller is
    # authenticated and this is True; False where the answer carries tokens.
    idempotent: bool = True

    @property
    def takes_idempotency_key(self) -> bool:
        return self.idempotent and self.auth is not None

    # Other success answers: status -> (model, description), e.g. a replayed payment's 200.
    also: dict[int, tuple[Any, str]] = field(default_factory=dict)

    @cached_property
    def also_adapters(self) -> dict[int, TypeAdapter]:
        return {status: TypeAdapter(model) for status, (model, _) in self.also.items()}

    @cached_property
    def response_adapter(self) -> TypeAdapter | None:
        return TypeAdapter(self.response) if self.response is not None else None


def _parse(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise validation_error(error, model) from None


def endpoint(
    *,
    tag: str,
    summary: str,
    auth: Auth | None = None,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: Any = None,
    errors: dict[int, str | tuple] | None = None,
    paginated: bool = False,
    limits: Iterable[Callable] = (),
    description: str | None = None,
    content: dict[str, str] | None = None,
    path: dict[str, dict] | None = None,
    idempotent: bool = True,
    also: dict[int, tuple[Any, str]] | None = None,
) -> Callable:
    """Declare a view; see the module docstring. `response` is a model or
    `(model, status)`; `errors` maps the view's own statuses to descriptions."""
    status = 200
    if isinstance(response, tuple):
        response, status = response
    if paginated and (query is None or not {"page", "per_page"} <= set(query.model_fields)):
        raise TypeError("a paginated endpoint's query model declares page and per_page")

    def decorate(view: Callable) -> Callable:
        spec = Endpoint(
            name=view.__name__,
            tag=tag,
            summary=summary,
            description=description or None,
            auth=auth,
            body=body,
            query=query,
            response=response,
            status=status,
            errors=dict(errors or {}),
            paginated=paginated,
            content=dict(content or {}),
            path=dict(path or {}),
            idempotent=idempotent,
            also=dict(also or {}),
        )

        @wraps(view)
        def call(**kwargs):
            # After the rate limits (a 429 never claims a key), before the body
            # is read: a refused body is an answer too, replayed like any other.
            stored = idempotency.begin(spec.takes_idempotency_key)
            if stored is not None:
                return stored
            if body is not None:
                kwargs["body"] = _parse(body, json_body())
            if query is not None:
                kwargs["query"] = _parse(query, request.args.to_dict())
            return view(**kwargs)

        # Rate limits under the auth check and above the parsing (keyed by the
        # view's name, which `wraps` keeps): a refused body still counts.
        for limit in reversed(tuple(limits)):
            call = limit(call)

        @wraps(view)
        def wrapper(**kwargs):
            if auth is not None:
                auth.check()
            result = call(**kwargs)
            if current_app.testing and not idempotency.is_replay(result):
                return check_response(spec, result)
            return result

        wrapper.endpoint = spec
        return wrapper

    return decorate


class ResponseContractError(AssertionError):
    """A view answered something its declaration does not describe (tests only)."""


def check_response(spec: Endpoint, result: Any):
    """The answer as a Response, after checking it against the declaration."""
    response = current_app.make_response(result)
    where = f"{request.method} {request.path}"
    adapter = spec.response_adapter
    if response.status_code in spec.also_adapters:
        adapter = spec.also_adapters[response.status_code]
    elif response.status_code != spec.status:
        raise ResponseContractError(f"{where}: status {response.status_code}, not {spec.status}")
    if response.is_json:
        if adapter is None:
            raise ResponseContractError(f"{where}: JSON answer without a response model")
        try:
            adapter.validate_json(response.get_data(), strict=True)
        except ValidationError as error:
            raise ResponseContractError(f"{where}: {error}") from None
    elif response.mimetype not in spec.content:
        raise ResponseContractError(f"{where}: undeclared content type {response.mimetype}")
    if spec.paginated and "Link" not in response.headers:
        raise ResponseContractError(f"{where}: pagination headers missing")
    return response
