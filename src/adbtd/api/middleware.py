"""ASGI middleware: request ids and the last-resort 500, then the API guard (auth, rate limits).

The guard runs before routing and body parsing, which is what makes the check order
401 → 429 → 400 hold even for malformed JSON.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

import anyio.to_thread
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adbtd.api.errors import MAX_BODY_BYTES, STATUS_BY_CODE, rate_limit_headers
from adbtd.db.key_lookup import KeyLookup
from adbtd.errors import Unauthorized
from adbtd.runtime import Runtime
from adbtd.services.api_keys import AuthenticatedKey, resolve_key, touch_key
from adbtd.services.ratelimit import BucketSpec, Decision, bucket_specs

log = logging.getLogger("adbtd.api")

PUBLIC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
_SEND_PATH = re.compile(r"^/mailboxes/[^/]+/send/?$")
_FETCH_PATH = re.compile(r"^/mailboxes/[^/]+/messages(?:/[^/]+)?/?$")


def bucket_for(method: str, route_path: str) -> str:
    """Which rate bucket a request draws from, by the reference's table."""
    if method == "POST" and _SEND_PATH.match(route_path):
        return "send"
    if method == "GET" and _FETCH_PATH.match(route_path):
        return "fetch"
    return "default"


def route_path(scope: Scope) -> str:
    """The path below the mount point (``/api/v1``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


class RequestContextMiddleware:
    """Give every request an id (``X-Request-Id``) and turn any escaped exception into a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "unhandled error in %s %s (request %s)",
                scope.get("method"),
                scope.get("path"),
                request_id,
            )
            if started:
                return
            body = {
                "error": {
                    "code": "internal_error",
                    "message": "unexpected server error",
                    "requestId": request_id,
                }
            }
            await send_json(send_with_id, 500, body)


class ApiGuardMiddleware:
    """Authenticate the Bearer key and charge its rate bucket before the route runs."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.specs = bucket_specs(runtime.settings)
        self.keys = KeyLookup(runtime.db)
        # SQLite and in-process buckets answer in microseconds: cheaper on the event loop than
        # a worker-thread hop. PostgreSQL or Redis wait on the network, so they go to a thread.
        self.inline = self.keys.local and runtime.buckets.local

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        spec = self.specs[bucket_for(scope["method"], path)]
        try:
            if self.inline:
                auth, stale, decision = self._check(header, spec)
            else:  # one worker-thread hop for both
                auth, stale, decision = await anyio.to_thread.run_sync(self._check, header, spec)
            if stale:
                await anyio.to_thread.run_sync(self._touch, auth.key_id)
        except Unauthorized as exc:
            await send_json(
                send,
                401,
                {"error": {"code": "unauthorized", "message": exc.message}},
                [(b"www-authenticate", b'Bearer realm="adbtd"')],
            )
            return
        limit_headers = _limit_headers(decision)
        if not decision.allowed:
            message = f"rate limit of the {spec.name} bucket exceeded; retry later"
            await send_json(
                send,
                STATUS_BY_CODE["rate_limited"],
                {"error": {"code": "rate_limited", "message": message}},
                [*limit_headers, (b"retry-after", str(decision.retry_after).encode())],
            )
            return
        if _declared_length(scope) > MAX_BODY_BYTES:  # refused unread, with the envelope
            message = f"request body over {MAX_BODY_BYTES} bytes"
            await send_json(
                send,
                413,
                {"error": {"code": "payload_too_large", "message": message}},
                limit_headers,
            )
            return
        state = scope.setdefault("state", {})
        state["auth"], state["rate_limit"] = auth, decision

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *limit_headers]
            await send(message)

        received = 0

        async def receive_within_limit() -> Message:
            """A streamed body (no Content-Length) is cut off once it passes the limit."""
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise StarletteHTTPException(413)  # answered with the envelope, inside
            return message

        await self.app(scope, receive_within_limit, send_with_limits)

    def _check(
        self, header: str | None, spec: BucketSpec
    ) -> tuple[AuthenticatedKey, bool, Decision]:
        """The key, whether its ``last_used_at`` is due, and the bucket's decision;
        ``Unauthorized`` for a bad key."""
        auth, stale = resolve_key(self.keys, header)
        return auth, stale, self.runtime.buckets.take(auth.key_id, spec)

    def _touch(self, key_id: str) -> None:
        """Written at most once a minute per key, in its own short write transaction."""
        with self.runtime.db.transaction() as session:
            touch_key(session, key_id=key_id)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            try:
                return str(value.decode("latin-1"))
            except UnicodeDecodeError:
                return None
    return None


def _declared_length(scope: Scope) -> int:
    """The Content-Length a request declares (0 when absent or unreadable: a streamed body is
    counted as it is read, by the guard's ``receive_within_limit``)."""
    value = _header(scope, b"content-length")
    return int(value) if value is not None and value.isdigit() else 0


def _limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in rate_limit_headers(decision).items()]
