"""POST /domains/:id/verify (an addition): check the domain's DNS records now."""

from __future__ import annotations

from fastapi import APIRouter

from adbtd.adapters.dns_resolver import build_resolver
from adbtd.api.deps import AuthDep, RuntimeDep
from adbtd.api.routes.domains import DomainDetailOut, domain_detail_out
from adbtd.api.schemas import Envelope, error_responses
from adbtd.errors import Conflict
from adbtd.services import dns_verify, domains

router = APIRouter(tags=["domains"])

# An API caller waits for the answer: all lookups of one verification share this budget.
ON_DEMAND_BUDGET_SECONDS = 20.0


@router.post(
    "/domains/{domain_id}/verify",
    response_model=Envelope[DomainDetailOut],
    responses=error_responses(404, 409),
)
def verify_domain(domain_id: str, auth: AuthDep, runtime: RuntimeDep) -> Envelope[DomainDetailOut]:
    """Checks MX, SPF, DKIM and DMARC now; returns the domain as ``GET /domains/:id`` does.

    Each record carries ``ok``, ``status`` (``ok``, ``fail``, ``timeout``, ``dns_error``) and
    ``error`` (why it is not ok). A DNS timeout leaves the record's flag as it was.
    """
    with runtime.db.transaction() as session:
        domain = domains.get_domain(session, workspace_id=auth.workspace_id, domain_id=domain_id)
        if domain.status in dns_verify.UNVERIFIABLE_STATUSES:
            raise Conflict(f"domain is {domain.status}; it can be verified once provisioned")
    settings = runtime.settings
    dns_verify.verify_domain(
        runtime.db,
        domain_id=domain_id,
        settings=settings,
        resolver=build_resolver(settings, budget_seconds=ON_DEMAND_BUDGET_SECONDS),
        managed_resolver=build_resolver(
            settings, budget_seconds=ON_DEMAND_BUDGET_SECONDS, managed=True
        ),
    )
    with runtime.db.transaction() as session:
        domain = domains.get_domain(session, workspace_id=auth.workspace_id, domain_id=domain_id)
        return Envelope(data=domain_detail_out(session, domain, settings))
