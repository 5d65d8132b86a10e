"""Rate limits (Flask-Limiter): a default per client IP on every route, the auth
limits of login/register and the per-account limit of the password change.

The limiter object is shared by every app in the process; `init_app` binds it.
Views put `@limiter.exempt` above their @endpoint, or pass the limits that must
run after authentication and before the body is read as `@endpoint(limits=[...])`.
"""

from flask import current_app
from flask_jwt_extended import get_jwt
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from schemas import EMAIL_MAX
from validation import request_json

limiter = Limiter(
    key_func=get_remote_address,
    default_limits=[lambda: current_app.config["RATELIMIT_DEFAULT"]],
    headers_enabled=True,
)


@limiter.request_filter
def limits_switched_off() -> bool:
    """The limiter object is shared by every app in the process (tests build
    many); an app built with RATELIMIT_ENABLED=false is never limited."""
    return not current_app.config["RATELIMIT_ENABLED"]


def email_rate_key() -> str:
    """Rate-limit key for login/register: the account e-mail in the body."""
    data = request_json()
    email = data.get("email") if isinstance(data, dict) else None
    return "email:" + (email.strip().lower()[:EMAIL_MAX] if isinstance(email, str) else "")


def auth_rate_limits(view):
    """Per client IP and per account e-mail (RATELIMIT_AUTH, e.g. 10 per minute)."""
    auth_limit = lambda: current_app.config["RATELIMIT_AUTH"]  # noqa: E731
    view = limiter.limit(auth_limit, key_func=email_rate_key, scope="auth-email")(view)
    return limiter.limit(auth_limit, key_func=get_remote_address, scope="auth-ip")(view)


def account_rate_limit(view):
    """Per account (RATELIMIT_AUTH), after the token check: a stolen access token
    must not become an oracle for guessing the current password."""
    auth_limit = lambda: current_app.config["RATELIMIT_AUTH"]  # noqa: E731
    account = lambda: "user:" + get_jwt()["sub"]  # noqa: E731
    return limiter.limit(auth_limit, key_func=account, scope="auth-account")(view)
