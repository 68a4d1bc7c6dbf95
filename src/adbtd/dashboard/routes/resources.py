"""Domains with their DNS records, dedicated IPs with reputation, mailboxes with settings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from adbtd.dashboard.deps import RuntimeDep, ViewerDep, render
from adbtd.errors import NotFound
from adbtd.services import dns_verify, domains, ips, mailboxes
from adbtd.services.secretbox import SecretBox

router = APIRouter()


@router.get("/domains", response_class=HTMLResponse)
def list_domains(request: Request, runtime: RuntimeDep, viewer: ViewerDep) -> Response:
    with runtime.db.transaction() as session:
        rows = [
            (domain, dns_verify.dns_records_out(session, domain, settings=runtime.settings))
            for domain in domains.list_domains(session, workspace_id=viewer.workspace.id)
        ]
    return render(request, "domains.html", viewer=viewer, active="domains", rows=rows)


@router.get("/ips", response_class=HTMLResponse)
def list_ips(request: Request, runtime: RuntimeDep, viewer: ViewerDep) -> Response:
    with runtime.db.transaction() as session:
        found = ips.list_ips(session, workspace_id=viewer.workspace.id)
    return render(request, "ips.html", viewer=viewer, active="ips", ips=found)


@router.get("/mailboxes", response_class=HTMLResponse)
def list_mailboxes(request: Request, runtime: RuntimeDep, viewer: ViewerDep) -> Response:
    with runtime.db.transaction() as session:
        rows = mailboxes.list_mailboxes(session, workspace_id=viewer.workspace.id)
    return render(
        request,
        "mailboxes.html",
        viewer=viewer,
        active="mailboxes",
        rows=rows,
        settings=runtime.settings,
        revealed={},
    )


@router.post("/mailboxes/{mailbox_id}/password", response_class=HTMLResponse)
def reveal_password(
    mailbox_id: str, request: Request, runtime: RuntimeDep, viewer: ViewerDep
) -> Response:
    """The plaintext, only on this explicit POST: a fragment for htmx, else the whole page."""
    with runtime.db.transaction() as session:
        mailbox = mailboxes.get_mailbox(
            session, workspace_id=viewer.workspace.id, mailbox_id=mailbox_id
        )
        if mailbox.password_encrypted is None:
            raise NotFound("this mailbox is not provisioned yet")
        password = SecretBox(runtime.settings.secret_key, mailboxes.PASSWORD_PURPOSE).open(
            mailbox.password_encrypted
        )
        rows = (
            []
            if request.headers.get("hx-request")
            else mailboxes.list_mailboxes(session, workspace_id=viewer.workspace.id)
        )
    if request.headers.get("hx-request"):
        return render(request, "_password.html", mailbox_id=mailbox.id, password=password)
    return render(
        request,
        "mailboxes.html",
        viewer=viewer,
        active="mailboxes",
        rows=rows,
        settings=runtime.settings,
        revealed={mailbox.id: password},
    )
