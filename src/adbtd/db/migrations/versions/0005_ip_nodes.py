"""dedicated IPs: the mail node that binds each address

Revision ID: 0005_ip_nodes
Revises: 0004_payment_state_at
Create Date: 2026-12-02 07:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_ip_nodes"
down_revision = "0004_payment_state_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dedicated_ips", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("node", sa.String(length=63), server_default="main", nullable=False)
        )
        batch_op.create_index("ix_dedicated_ips_node_status", ["node", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dedicated_ips", schema=None) as batch_op:
        batch_op.drop_index("ix_dedicated_ips_node_status")
        batch_op.drop_column("node")
