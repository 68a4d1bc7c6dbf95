"""API keys: create (plaintext shown once, in the response to the POST only), list, revoke.

The create form carries a one-time ``form_id``: a browser that re-submits it (reload, back
button) gets the page without a new key, instead of a second key it never asked for.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from adbtd.dashboard.deps import RuntimeDep, ViewerDep, redirect, render
from adbtd.errors import AdbtdError
from adbtd.runtime import Runtime
from adbtd.services import api_keys

router = APIRouter()

FORM_ID_TTL_SECONDS = 3600.0
MAX_REMEMBERED_FORMS = 10_000


class SubmittedForms:
    """The ``form_id``s already used in this process, for an hour (bounded)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, form_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen and (
                len(self._seen) > MAX_REMEMBERED_FORMS
                or next(iter(self._seen.values())) < now - FORM_ID_TTL_SECONDS
            ):
                self._seen.popitem(last=False)
            if form_id in self._seen:
                return False
            self._seen[form_id] = now
            return True


SUBMITTED = SubmittedForms()


def _page(
    request: Request,
    runtime: Runtime,
    viewer: ViewerDep,
    *,
    status: int = 200,
    created: api_keys.CreatedKey | None = None,
    error: str | None = None,
) -> Response:
    with runtime.db.transaction() as session:
        keys = api_keys.list_keys(session, workspace_id=viewer.workspace.id)
    keys.sort(key=lambda k: (k.revoked_at is not None, -k.created_at.timestamp()))
    return render(
        request,
        "api_keys.html",
        status=status,
        viewer=viewer,
        active="api-keys",
        keys=keys,
        created=created,
        error=error,
        form_id=secrets.token_urlsafe(16),
    )


@router.get("/api-keys", response_class=HTMLResponse)
def list_keys(request: Request, runtime: RuntimeDep, viewer: ViewerDep) -> Response:
    return _page(request, runtime, viewer)


@router.post("/api-keys", response_class=HTMLResponse)
def create_key(
    request: Request,
    runtime: RuntimeDep,
    viewer: ViewerDep,
    name: Annotated[str, Form(max_length=200)] = "",
    form_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    if form_id and not SUBMITTED.first_use(f"{viewer.workspace.id}:{form_id}"):
        return _page(
            request,
            runtime,
            viewer,
            status=409,
            error="This form was already submitted; its key is in the list below and its token "
            "was shown once. Create another key if you need one.",
        )
    try:
        with runtime.db.transaction() as session:
            created = api_keys.create_key(session, workspace_id=viewer.workspace.id, name=name)
    except AdbtdError as exc:
        return _page(request, runtime, viewer, status=400, error=exc.message)
    return _page(request, runtime, viewer, created=created)


@router.post("/api-keys/{key_id}/revoke")
def revoke_key(key_id: str, runtime: RuntimeDep, viewer: ViewerDep) -> Response:
    with runtime.db.transaction() as session:
        api_keys.revoke_key(session, key_id=key_id, workspace_id=viewer.workspace.id)
    return redirect("/api-keys", notice="key-revoked")
