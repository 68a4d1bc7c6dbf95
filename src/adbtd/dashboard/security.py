"""Cookies, CSRF tokens and response headers of the dashboard.

CSRF tokens are bound to the browser: an HMAC (keyed from ``ADBTD_SECRET_KEY``) of the session
token's hash when signed in, else of a random anonymous cookie. Every POST must echo the token
in the form field ``csrf_token`` or the ``X-CSRF-Token`` header (htmx); a new session (sign-in)
means a new token, so a token never outlives the session it was made for.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adbtd.errors import CsrfRejected
from adbtd.services.users import hash_session_token
from adbtd.settings import Settings

SESSION_COOKIE = "adbtd_session"
ANON_COOKIE = "adbtd_anon"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/dashboard"
ANON_MAX_AGE = 24 * 3600
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


def _key(settings: Settings) -> bytes:
    return hashlib.sha256(b"adbtd-dashboard-csrf\x00" + settings.secret_key.encode()).digest()


def csrf_token(settings: Settings, binding: str) -> str:
    return hmac.new(_key(settings), binding.encode(), hashlib.sha256).hexdigest()


def session_binding(session_hash: str) -> str:
    return "session:" + session_hash


def anon_binding(anon: str) -> str:
    return "anon:" + anon


def request_binding(request: Request) -> str | None:
    """What this browser's tokens are bound to: its session if it sends one, else its anon id."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        return session_binding(hash_session_token(token))
    anon = request.cookies.get(ANON_COOKIE)
    return anon_binding(anon) if anon else None


async def verify_csrf(request: Request) -> None:
    """Dependency of every dashboard route: POSTs must carry this browser's token."""
    if request.method != "POST":
        return
    settings: Settings = request.app.state.runtime.settings
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    binding = request_binding(request)
    if not sent or binding is None:
        raise CsrfRejected("this form has expired; reload the page and try again")
    if not hmac.compare_digest(sent, csrf_token(settings, binding)):
        raise CsrfRejected("this form has expired; reload the page and try again")


def page_token(request: Request) -> str:
    """The token forms on this page carry; a new anonymous id is set by ``render``."""
    settings: Settings = request.app.state.runtime.settings
    binding = request_binding(request)
    if binding is None:
        anon = getattr(request.state, "new_anon", None) or secrets.token_urlsafe(24)
        request.state.new_anon = anon
        binding = anon_binding(anon)
    return csrf_token(settings, binding)


def set_cookie(response: Response, settings: Settings, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def clear_cookie(response: Response, settings: Settings, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="lax", secure=settings.cookie_secure
    )


class SecurityHeadersMiddleware:
    """No caching of private pages, no framing, a strict content security policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(f"{scope.get('root_path', '')}/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
