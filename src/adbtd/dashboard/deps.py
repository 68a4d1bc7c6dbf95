"""What dashboard routes depend on: the runtime, the signed-in viewer and page rendering."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from adbtd.adapters.billing import BillingProvider
from adbtd.clock import iso_ms
from adbtd.dashboard.security import (
    ANON_COOKIE,
    ANON_MAX_AGE,
    SESSION_COOKIE,
    page_token,
    set_cookie,
)
from adbtd.db.models import Workspace
from adbtd.errors import NotFound
from adbtd.runtime import Runtime
from adbtd.services import users
from adbtd.services.users import CurrentUser

PREFIX = "/dashboard"
TEMPLATES_DIR = Path(__file__).parent / "templates"


class LoginRequired(Exception):
    """No valid session: the browser is sent to the sign-in page and back afterwards."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in user and the workspace the page is about."""

    user: CurrentUser
    workspace: Workspace
    workspaces: list[Workspace]


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_provider(request: Request) -> BillingProvider:
    provider: BillingProvider = request.app.state.billing
    return provider


def get_viewer(request: Request) -> Viewer:
    """The viewer, with ``?workspace=ID`` switching workspaces (404 unless a member)."""
    runtime = get_runtime(request)
    with runtime.db.transaction() as session:
        user = users.resolve_session(session, token=request.cookies.get(SESSION_COOKIE))
        if user is None:
            raise LoginRequired
        mine = users.user_workspaces(session, user_id=user.user_id)
        wanted = request.query_params.get("workspace") or user.workspace_id
        workspace = next((w for w in mine if w.id == wanted), None)
        if workspace is None and request.query_params.get("workspace"):
            raise NotFound("workspace not found")
        workspace = workspace or (mine[0] if mine else None)
        if workspace is None:
            raise NotFound("workspace not found")
        if workspace.id != user.workspace_id:
            users.switch_workspace(
                session, session_hash=user.session_hash, workspace_id=workspace.id
            )
        return Viewer(user=user, workspace=workspace, workspaces=mine)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ProviderDep = Annotated[BillingProvider, Depends(get_provider)]
ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def templates(request: Request) -> Jinja2Templates:
    found: Jinja2Templates = request.app.state.templates
    return found


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a page with this browser's CSRF token; sets the anonymous cookie when new."""
    context.setdefault("csrf_token", page_token(request))
    response = templates(request).TemplateResponse(request, template, context, status_code=status)
    anon = getattr(request.state, "new_anon", None)
    if anon:
        set_cookie(response, get_runtime(request).settings, ANON_COOKIE, anon, ANON_MAX_AGE)
    return response


def redirect(path: str, **query: str) -> RedirectResponse:
    """A 303 to a dashboard path (so a POST becomes a GET)."""
    from urllib.parse import urlencode

    suffix = f"?{urlencode(query)}" if query else ""
    return RedirectResponse(f"{PREFIX}{path}{suffix}", status_code=303)


def make_templates() -> Jinja2Templates:
    found = Jinja2Templates(directory=str(TEMPLATES_DIR))
    found.env.filters["when"] = _when
    found.env.globals["prefix"] = PREFIX
    return found


def _when(value: Any) -> str:
    """A timestamp for people: ``2026-05-03 09:21 UTC`` (ISO in the title attribute)."""
    text = iso_ms(value)
    if text is None:
        return "—"
    return f"{text[:10]} {text[11:16]} UTC"
