"""billing accounts: when the payment state (delinquent or not) was last set

Revision ID: 0004_payment_state_at
Revises: 0003_ip_listings
Create Date: 2026-12-02 07:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import adbtd.db.models

revision = "0004_payment_state_at"
down_revision = "0003_ip_listings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("payment_state_at", adbtd.db.models.UtcDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_accounts", schema=None) as batch_op:
        batch_op.drop_column("payment_state_at")
