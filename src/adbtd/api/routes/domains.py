"""Domains: list, add (an order), read with its DNS records, delete with its mailboxes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import Field
from sqlalchemy.orm import Session

from adbtd.api.deps import AuthDep, ReadSessionDep, RuntimeDep
from adbtd.api.schemas import Envelope, InModel, OutModel, error_responses
from adbtd.clock import iso_ms
from adbtd.db.models import Domain
from adbtd.services import dns_verify, domains, orders
from adbtd.settings import Settings

router = APIRouter(tags=["domains"])


class DomainCreate(InModel):
    name: Annotated[str, Field(min_length=1, max_length=255, description="A valid FQDN.")]
    mode: Literal["byo", "buy"] = "byo"


class DomainOut(OutModel):
    id: str
    name: str
    mode: str
    status: str
    spf_ok: bool
    dkim_ok: bool
    dmarc_ok: bool
    mx_ok: bool
    dkim_selector: str
    created_at: str
    last_verified_at: str | None


class DnsRecordOut(OutModel):
    """A record to publish and its last check: ``status`` ok/fail/timeout/dns_error/unchecked."""

    type: str
    name: str
    value: str
    ok: bool
    status: str
    error: str | None


class DomainDetailOut(DomainOut):
    dns_records: list[DnsRecordOut]


class DomainOrderOut(OutModel):
    order_id: str
    status: str
    domain: str


class DomainDeletedOut(OutModel):
    deleted_mailboxes: int


def domain_out(domain: Domain) -> DomainOut:
    return DomainOut(
        id=domain.id,
        name=domain.name,
        mode=domain.mode,
        status=domain.status,
        spf_ok=domain.spf_ok,
        dkim_ok=domain.dkim_ok,
        dmarc_ok=domain.dmarc_ok,
        mx_ok=domain.mx_ok,
        dkim_selector=domain.dkim_selector,
        created_at=iso_ms(domain.created_at) or "",
        last_verified_at=iso_ms(domain.last_verified_at),
    )


@router.get("/domains", response_model=Envelope[list[DomainOut]], responses=error_responses())
def list_domains(auth: AuthDep, session: ReadSessionDep) -> Envelope[list[DomainOut]]:
    """Returns all domains on the workspace, with verification flags per DNS record type."""
    found = domains.list_domains(session, workspace_id=auth.workspace_id)
    return Envelope(data=[domain_out(d) for d in found])


@router.post(
    "/domains",
    response_model=Envelope[DomainOrderOut],
    responses=error_responses(402, 409),
)
def create_domain(
    body: DomainCreate, auth: AuthDep, runtime: RuntimeDep
) -> Envelope[DomainOrderOut]:
    """Adds a domain; needs a dedicated IP on the workspace. Returns the pending order."""
    with runtime.db.transaction() as session:
        placed = orders.place_domain_order(
            session,
            workspace_id=auth.workspace_id,
            name=body.name,
            mode=body.mode,
            settings=runtime.settings,
        )
    runtime.order_placed()
    return Envelope(
        data=DomainOrderOut(
            order_id=placed.order_id, status=placed.status, domain=placed.domain or ""
        )
    )


@router.get(
    "/domains/{domain_id}",
    response_model=Envelope[DomainDetailOut],
    responses=error_responses(404),
)
def read_domain(
    domain_id: str, auth: AuthDep, runtime: RuntimeDep, session: ReadSessionDep
) -> Envelope[DomainDetailOut]:
    """Returns one domain and every DNS record the customer must publish for it."""
    domain = domains.get_domain(session, workspace_id=auth.workspace_id, domain_id=domain_id)
    return Envelope(data=domain_detail_out(session, domain, runtime.settings))


def domain_detail_out(session: Session, domain: Domain, settings: Settings) -> DomainDetailOut:
    """The domain with every record to publish and the state of its last check."""
    records = dns_verify.dns_records_out(session, domain, settings=settings)
    return DomainDetailOut(
        **domain_out(domain).model_dump(),
        dns_records=[DnsRecordOut(**record) for record in records],
    )


@router.delete(
    "/domains/{domain_id}",
    response_model=Envelope[DomainDeletedOut],
    responses=error_responses(404),
)
def delete_domain(domain_id: str, auth: AuthDep, runtime: RuntimeDep) -> Envelope[DomainDeletedOut]:
    """Permanently deletes the domain and its mailboxes; billing follows."""
    with runtime.db.transaction() as session:
        deleted = domains.delete_domain(
            session, workspace_id=auth.workspace_id, domain_id=domain_id
        )
    runtime.resources_changed(auth.workspace_id, removed_mailboxes=deleted)
    return Envelope(data=DomainDeletedOut(deleted_mailboxes=len(deleted)))
