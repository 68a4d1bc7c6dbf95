"""ip listings: when an address starts and stops being on a DNS blocklist

Revision ID: 0003_ip_listings
Revises: 0002_dashboard_users
Create Date: 2026-11-25 06:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import adbtd.db.models

revision = "0003_ip_listings"
down_revision = "0002_dashboard_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ip_listings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.Column("ip_id", sa.String(length=32), nullable=True),
        sa.Column("workspace_id", sa.String(length=32), nullable=True),
        sa.Column("zone", sa.String(length=253), nullable=False),
        sa.Column("code", sa.String(length=45), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("listed_at", adbtd.db.models.UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", adbtd.db.models.UtcDateTime(), nullable=False),
        sa.Column("delisted_at", adbtd.db.models.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ip_id"],
            ["dedicated_ips.id"],
            name=op.f("fk_ip_listings_ip_id_dedicated_ips"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_ip_listings_workspace_id_workspaces"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_listings")),
    )
    with op.batch_alter_table("ip_listings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ip_listings_address_open", ["address", "delisted_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ip_listings_ip_id"), ["ip_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ip_listings_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ip_listings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ip_listings_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_ip_listings_ip_id"))
        batch_op.drop_index("ix_ip_listings_address_open")
    op.drop_table("ip_listings")
