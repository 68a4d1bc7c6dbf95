"""Dependencies shared by routes: the runtime, the authenticated key, a database session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from adbtd.errors import Unauthorized
from adbtd.runtime import Runtime
from adbtd.services.api_keys import AuthenticatedKey


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def auth_of(request: Request) -> AuthenticatedKey:
    """The key the guard middleware authenticated; absent only on a misrouted request."""
    auth = getattr(request.state, "auth", None)
    if not isinstance(auth, AuthenticatedKey):
        raise Unauthorized("missing Authorization header")
    return auth


# These two only read request state: async, so FastAPI does not hop to a worker thread for them.
async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


async def get_auth(request: Request) -> AuthenticatedKey:
    return auth_of(request)


def get_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Iterator[Session]:
    """A read-only snapshot for the GET routes; writes open their own ``db.transaction()``."""
    with runtime.db.read() as session:
        yield session


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
AuthDep = Annotated[AuthenticatedKey, Depends(get_auth)]
ReadSessionDep = Annotated[Session, Depends(get_session)]
