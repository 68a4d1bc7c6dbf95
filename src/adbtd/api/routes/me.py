"""GET /me: the workspace and key behind the Bearer token."""

from __future__ import annotations

from fastapi import APIRouter

from adbtd.api.deps import AuthDep, ReadSessionDep
from adbtd.api.schemas import Envelope, OutModel, error_responses
from adbtd.services.workspaces import get_workspace

router = APIRouter(tags=["workspace"])


class WorkspaceOut(OutModel):
    id: str
    slug: str
    name: str
    currency: str


class ApiKeyOut(OutModel):
    id: str
    name: str


class MeOut(OutModel):
    workspace: WorkspaceOut
    api_key: ApiKeyOut


@router.get("/me", response_model=Envelope[MeOut], responses=error_responses())
def read_me(auth: AuthDep, session: ReadSessionDep) -> Envelope[MeOut]:
    """Returns the workspace associated with the API key."""
    workspace = get_workspace(session, auth.workspace_id)
    return Envelope(
        data=MeOut(
            workspace=WorkspaceOut(
                id=workspace.id,
                slug=workspace.slug,
                name=workspace.name,
                currency=workspace.currency,
            ),
            api_key=ApiKeyOut(id=auth.key_id, name=auth.key_name),
        )
    )
