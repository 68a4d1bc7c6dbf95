"""Tables of the control plane. Schemas for the API live in ``adbtd.api.schemas``, not here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from adbtd.settings import DEFAULT_NODE

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    display_prefix: Mapped[str] = mapped_column(String(8))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class BillingAccount(Base):
    """A workspace's standing with the billing provider: customer, payment method, subscription."""

    __tablename__ = "billing_accounts"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(String(20))
    customer_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    payment_method_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    payment_method_added_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    subscription_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    delinquent: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the fact behind ``delinquent`` happened (a payment event's creation, a checkout):
    # webhooks arrive in any order, and an older one must not undo a newer one.
    payment_state_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class SubscriptionItem(Base):
    """How many of one billable kind (domain, ip, mailbox) the workspace pays for."""

    __tablename__ = "subscription_items"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    item_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Order(Base):
    """A unit of provisioning work; the table is also the worker's queue."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Domain(Base):
    __tablename__ = "domains"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    mode: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(20))
    managed: Mapped[bool] = mapped_column(Boolean, default=False)
    spf_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    dkim_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    dmarc_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    mx_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    dns_results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    dkim_selector: Mapped[str] = mapped_column(String(63))
    dkim_private_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class DedicatedIp(Base):
    """An address of the inventory: free, reserved by an order, assigned, or cooling down."""

    __tablename__ = "dedicated_ips"
    __table_args__ = (
        Index("ix_dedicated_ips_status", "status"),
        Index("ix_dedicated_ips_node_status", "node", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str] = mapped_column(String(45), unique=True)
    # The mail node that binds the address (``ADBTD_NODE_NAME`` of the node that serves it).
    node: Mapped[str] = mapped_column(String(63), default=DEFAULT_NODE, server_default=DEFAULT_NODE)
    status: Mapped[str] = mapped_column(String(20))
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL"), nullable=True, index=True
    )
    order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    allocated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    cooldown_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_reputation_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    reputation_flags: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class Mailbox(Base):
    __tablename__ = "mailboxes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    ip_id: Mapped[str | None] = mapped_column(
        ForeignKey("dedicated_ips.id", ondelete="SET NULL"), nullable=True, index=True
    )
    order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    password_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class NodeRevision(Base):
    """One counter bumped with every change a mail node must apply; nodes poll it."""

    __tablename__ = "node_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class User(Base):
    """A person who signs in to the dashboard; the password is an argon2id hash."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Membership(Base):
    """A user's access to a workspace (the sign-up creates the first one)."""

    __tablename__ = "memberships"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(20), default="owner")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DashboardSession(Base):
    """A signed-in browser; the cookie holds the token, the table only its SHA-256."""

    __tablename__ = "dashboard_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LoginThrottle(Base):
    """Failed sign-ins per account or per client address inside the current window."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(UtcDateTime())


class IpListing(Base):
    """One stretch of time an address sat on a DNS blocklist with one return code."""

    __tablename__ = "ip_listings"
    __table_args__ = (Index("ix_ip_listings_address_open", "address", "delisted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(45))
    ip_id: Mapped[str | None] = mapped_column(
        ForeignKey("dedicated_ips.id", ondelete="SET NULL"), nullable=True, index=True
    )
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL"), nullable=True, index=True
    )
    zone: Mapped[str] = mapped_column(String(253))
    code: Mapped[str] = mapped_column(String(45))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    listed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    delisted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
