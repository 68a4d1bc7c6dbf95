"""Mailboxes: list, create (an order), read connection details, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from adbtd.api.deps import AuthDep, ReadSessionDep, RuntimeDep
from adbtd.api.schemas import Envelope, InModel, OutModel, error_responses
from adbtd.clock import iso_ms
from adbtd.db.models import Mailbox
from adbtd.services import mailboxes, orders
from adbtd.settings import Settings

router = APIRouter(tags=["mailboxes"])

EmailText = Annotated[str, Field(min_length=3, max_length=320)]


class MailboxCreate(InModel):
    emails: Annotated[list[EmailText], Field(min_length=1, max_length=orders.MAX_MAILBOXES)]


class MailboxOut(OutModel):
    id: str
    email: str
    smtp_host: str
    imap_host: str
    submission_port: int
    imap_port: int
    status: str
    created_at: str


class MailboxOrderOut(OutModel):
    order_id: str
    status: str
    emails: list[str]


class MailboxDeletedOut(OutModel):
    deleted: str


def mailbox_out(mailbox: Mailbox, address: str | None, settings: Settings) -> MailboxOut:
    host = address or ""
    return MailboxOut(
        id=mailbox.id,
        email=mailbox.email,
        smtp_host=host,
        imap_host=host,
        submission_port=settings.submission_port,
        imap_port=settings.imap_port,
        status=mailbox.status,
        created_at=iso_ms(mailbox.created_at) or "",
    )


@router.get("/mailboxes", response_model=Envelope[list[MailboxOut]], responses=error_responses())
def list_mailboxes(
    auth: AuthDep, runtime: RuntimeDep, session: ReadSessionDep
) -> Envelope[list[MailboxOut]]:
    """Returns all mailboxes with the SMTP and IMAP hosts and ports to connect to."""
    rows = mailboxes.list_mailboxes(session, workspace_id=auth.workspace_id)
    return Envelope(data=[mailbox_out(mb, address, runtime.settings) for mb, address in rows])


@router.post(
    "/mailboxes",
    response_model=Envelope[MailboxOrderOut],
    responses=error_responses(402, 409),
)
def create_mailboxes(
    body: MailboxCreate, auth: AuthDep, runtime: RuntimeDep
) -> Envelope[MailboxOrderOut]:
    """Creates 1-100 mailboxes on domains of the workspace. Returns the pending order."""
    with runtime.db.transaction() as session:
        placed = orders.place_mailbox_order(
            session, workspace_id=auth.workspace_id, emails=body.emails, settings=runtime.settings
        )
    runtime.order_placed()
    return Envelope(
        data=MailboxOrderOut(order_id=placed.order_id, status=placed.status, emails=placed.emails)
    )


@router.get(
    "/mailboxes/{mailbox_id}",
    response_model=Envelope[MailboxOut],
    responses=error_responses(404),
)
def read_mailbox(
    mailbox_id: str, auth: AuthDep, runtime: RuntimeDep, session: ReadSessionDep
) -> Envelope[MailboxOut]:
    """Returns connection details for one mailbox (never its password)."""
    mailbox = mailboxes.get_mailbox(session, workspace_id=auth.workspace_id, mailbox_id=mailbox_id)
    address = mailboxes.mailbox_address(session, mailbox)
    return Envelope(data=mailbox_out(mailbox, address, runtime.settings))


@router.delete(
    "/mailboxes/{mailbox_id}",
    response_model=Envelope[MailboxDeletedOut],
    responses=error_responses(404),
)
def delete_mailbox(
    mailbox_id: str, auth: AuthDep, runtime: RuntimeDep
) -> Envelope[MailboxDeletedOut]:
    """Permanently deletes a mailbox: its login stops working; billing follows."""
    with runtime.db.transaction() as session:
        email = mailboxes.delete_mailbox(
            session, workspace_id=auth.workspace_id, mailbox_id=mailbox_id
        )
    runtime.resources_changed(auth.workspace_id, removed_mailboxes=[mailbox_id])
    return Envelope(data=MailboxDeletedOut(deleted=email))
