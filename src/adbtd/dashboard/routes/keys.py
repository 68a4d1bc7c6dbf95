"""API keys: create (plaintext shown once, in the response to the POST only), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from adbtd.dashboard.deps import RuntimeDep, ViewerDep, redirect, render
from adbtd.errors import AdbtdError
from adbtd.runtime import Runtime
from adbtd.services import api_keys

router = APIRouter()


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
) -> Response:
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
