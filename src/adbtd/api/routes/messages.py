"""POST /mailboxes/:id/send, GET /mailboxes/:id/messages, GET /mailboxes/:id/messages/:uid.

Sync routes (run in the threadpool): the service does blocking SMTP/IMAP through the pools.
These are the latency-critical routes, so they take no dependency (``mail_call`` is called
inside) and the already-validated response model is serialized once, straight to a
``Response``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from adbtd.api.deps import auth_of, runtime_of
from adbtd.api.schemas import Envelope, InModel, OutModel, error_responses
from adbtd.clock import iso_ms
from adbtd.services import mail
from adbtd.services.mail import MailContext

router = APIRouter(tags=["messages"])


@dataclass(frozen=True, slots=True)
class MailCall:
    """The mail context and the workspace of the authenticated key."""

    ctx: MailContext
    workspace_id: str


def mail_call(request: Request) -> MailCall:
    """Called inside the route, not declared as a dependency: FastAPI's dependency solving
    costs more per request than this whole function (these are the latency-critical routes)."""
    runtime = runtime_of(request)
    auth = auth_of(request)
    ctx = MailContext(
        runtime.db,
        runtime.settings,
        runtime.smtp_pool,
        runtime.imap_pool,
        accounts=runtime.mail_accounts,
        summaries=runtime.message_summaries,
        details=runtime.message_details,
    )
    return MailCall(ctx, auth.workspace_id)


def json_response(body: BaseModel) -> Response:
    """Serialize a validated response model once (FastAPI would validate it again)."""
    return Response(body.model_dump_json(by_alias=True), media_type="application/json")


FolderQuery = Annotated[str, Query(description='IMAP folder name. Defaults to "INBOX".')]


class SendIn(InModel):
    to: str | list[str] = Field(description="One address or a list; `Name <addr>` allowed.")
    cc: list[str] | None = None
    bcc: list[str] | None = Field(None, description="Envelope only, never in the headers.")
    subject: str
    text: str | None = None
    html: str | None = None
    from_name: str | None = Field(None, alias="fromName")
    reply_to: str | None = Field(None, alias="replyTo")


class SendOut(OutModel):
    message_id: str
    accepted: list[str]
    rejected: list[str]
    response: str


class MessageSummaryOut(OutModel):
    uid: int
    message_id: str | None
    subject: str | None
    from_: list[str] = Field(alias="from")
    to: list[str]
    cc: list[str]
    date: str | None
    flags: list[str]
    size: int
    seen: bool


class MessageListOut(OutModel):
    folder: str
    total: int
    uid_validity: int | None
    messages: list[MessageSummaryOut]
    next_before: int | None


class AttachmentOut(OutModel):
    filename: str | None
    content_type: str
    size: int
    content_id: str | None


class MessageOut(OutModel):
    uid: int
    message_id: str | None
    subject: str | None
    from_: str | None = Field(alias="from")
    to: str | None
    cc: str | None
    date: str | None
    text: str | None
    html: str | None
    attachments: list[AttachmentOut]
    flags: list[str]
    seen: bool


@router.post(
    "/mailboxes/{mailbox_id}/send",
    response_model=Envelope[SendOut],
    responses=error_responses(404, 409, 502),
)
def send_message(mailbox_id: str, body: SendIn, request: Request) -> Response:
    """Submits an outbound message through the mailbox's SMTP submission server."""
    call = mail_call(request)
    result = mail.send(
        call.ctx,
        workspace_id=call.workspace_id,
        mailbox_id=mailbox_id,
        to=body.to,
        cc=body.cc,
        bcc=body.bcc,
        subject=body.subject,
        text=body.text,
        html=body.html,
        from_name=body.from_name,
        reply_to=body.reply_to,
    )
    out = SendOut(
        message_id=result.message_id,
        accepted=result.accepted,
        rejected=result.rejected,
        response=result.response,
    )
    return json_response(Envelope(data=out))


@router.get(
    "/mailboxes/{mailbox_id}/messages",
    response_model=Envelope[MessageListOut],
    responses=error_responses(404, 409, 502),
)
def list_messages(
    mailbox_id: str,
    request: Request,
    folder: FolderQuery = mail.DEFAULT_FOLDER,
    limit: Annotated[int, Query(description="1-100, default 25.")] = mail.DEFAULT_LIMIT,
    before: Annotated[int | None, Query(description="Only UIDs below this one.")] = None,
) -> Response:
    """Lists recent messages from an IMAP folder, newest first."""
    call = mail_call(request)
    page = mail.list_messages(
        call.ctx,
        workspace_id=call.workspace_id,
        mailbox_id=mailbox_id,
        folder=folder,
        limit=limit,
        before=before,
    )
    messages = [
        MessageSummaryOut(
            uid=m.uid,
            message_id=m.message_id,
            subject=m.subject,
            from_=m.from_,
            to=m.to,
            cc=m.cc,
            date=_iso(m.date),
            flags=m.flags,
            size=m.size,
            seen="\\Seen" in m.flags,
        )
        for m in page.messages
    ]
    out = MessageListOut(
        folder=page.folder,
        total=page.total,
        uid_validity=page.uid_validity,
        messages=messages,
        next_before=page.next_before,
    )
    return json_response(Envelope(data=out))


@router.get(
    "/mailboxes/{mailbox_id}/messages/{uid}",
    response_model=Envelope[MessageOut],
    responses=error_responses(404, 409, 502),
)
def fetch_message(
    mailbox_id: str,
    uid: int,
    request: Request,
    folder: FolderQuery = mail.DEFAULT_FOLDER,
    mark_seen: Annotated[
        Literal["0", "1"], Query(alias="markSeen", description='"1" marks the message read.')
    ] = "0",
) -> Response:
    """Returns one message: headers, text and HTML bodies, attachment metadata."""
    call = mail_call(request)
    m = mail.fetch_message(
        call.ctx,
        workspace_id=call.workspace_id,
        mailbox_id=mailbox_id,
        uid=uid,
        folder=folder,
        mark_seen=mark_seen == "1",
    )
    attachments = [
        AttachmentOut(
            filename=a.filename, content_type=a.content_type, size=a.size, content_id=a.content_id
        )
        for a in m.attachments
    ]
    out = MessageOut(
        uid=m.uid,
        message_id=m.message_id,
        subject=m.subject,
        from_=m.from_,
        to=m.to,
        cc=m.cc,
        date=_iso(m.date),
        text=m.text,
        html=m.html,
        attachments=attachments,
        flags=m.flags,
        seen="\\Seen" in m.flags,
    )
    return json_response(Envelope(data=out))


def _iso(moment: datetime | None) -> str | None:
    return iso_ms(moment)
