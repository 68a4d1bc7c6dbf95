"""Tell mail nodes that their desired state changed.

A service that changes anything a node renders (domains, DKIM keys, IPs, mailboxes, passwords)
calls ``mark_node_changed`` inside its transaction. The bump commits with the change, so a node
polling ``current_revision`` (every process, any host) sees it; ``Runtime.node_changed`` wakes an
in-process reconciler at once after commit.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from adbtd.clock import utcnow
from adbtd.db.models import NodeRevision


def mark_node_changed(session: Session) -> None:
    """Bump the node revision in the caller's transaction."""
    session.execute(
        update(NodeRevision)
        .where(NodeRevision.id == 1)
        .values(revision=NodeRevision.revision + 1, changed_at=utcnow())
    )


def current_revision(session: Session) -> int:
    return session.scalar(select(NodeRevision.revision).where(NodeRevision.id == 1)) or 0
