"""Settings: every knob is an ``ADBTD_*`` environment variable, read only by ``build_settings``.

Nothing reads the environment at import time; callers build a ``Settings`` once and pass it in.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "placeholder", "dev", "test"}
)
MIN_SECRET_LENGTH = 32
DEFAULT_NODE = "main"
DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class Settings(BaseSettings):
    """The platform's configuration; ``env="embedded"`` is the one-machine default."""

    # A refused value is never echoed back: several settings are secrets.
    model_config = SettingsConfigDict(
        env_prefix="ADBTD_", extra="ignore", hide_input_in_errors=True
    )

    env: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Path("var")
    database_url: str = ""
    secret_key: str = Field(default="", repr=False)

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_base_url: str = ""

    ip_pool: str = "127.0.1.1-127.0.1.20"
    node_name: str = DEFAULT_NODE  # the mail node this process runs; IP_POOL joins it
    ip_cooldown_days: float = 30.0
    submission_port: int = 10587
    imap_port: int = 10993
    smtp_port: int = 10025
    outbound_relay: str = ""
    mail_hostname: str = "mail.adbtd.localhost"
    mailnode_dir: Path | None = None  # default: DATA_DIR/mailnode when the daemons can reach it
    dkim_selector: str = "adbtd-2026"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    run_mailnode: bool = True
    run_worker: bool = True
    reconcile_interval_seconds: float = 30.0
    dns_resolvers: str = ""
    managed_dns_resolvers: str = ""  # where bought (managed) domains are checked; see docs/dns.md
    dns_timeout_seconds: float = Field(default=5.0, gt=0)
    dns_attempts: int = Field(default=2, ge=1)
    dns_verify_interval_seconds: float = Field(default=3600.0, gt=0)
    dns_retry_seconds: float = Field(default=60.0, gt=0)
    dns_poll_seconds: float = Field(default=5.0, gt=0)
    dns_outage_grace_seconds: float = Field(default=86400.0, gt=0)
    dnsbl_zones: str = "zen.spamhaus.org"
    reputation_interval_seconds: float = Field(default=21600.0, gt=0)
    mx_hostname: str = ""
    node_mx_hostnames: str = ""  # "mx-east=mx1.example.com,mx-west=mx2.example.com"
    dns_hosting_provider: Literal["local", "pdns"] = "local"
    pdns_api_url: str = "http://127.0.0.1:8081"
    pdns_api_key: str = Field(default="", repr=False)
    pdns_server_id: str = "localhost"
    pdns_local: bool = False
    pdns_dns_port: int = Field(default=10053, gt=0, lt=65536)
    run_dns_worker: bool = True

    message_cache_mb: int = Field(default=64, ge=0)  # parsed messages kept per API process

    rate_limit_store: str = "memory"  # "memory" or a redis:// URL shared by API processes
    rate_default_per_minute: float = Field(default=60.0, gt=0)
    rate_default_burst: int = Field(default=60, ge=1)
    rate_send_per_minute: float = Field(default=30.0, gt=0)
    rate_send_burst: int = Field(default=10, ge=1)
    rate_fetch_per_minute: float = Field(default=30.0, gt=0)
    rate_fetch_burst: int = Field(default=30, ge=1)

    billing_provider: Literal["local", "stripe"] = "local"
    billing_prices: str = "usd:domain=1.00,ip=5.00,mailbox=2.00"
    stripe_api_key: str = Field(default="", repr=False)
    stripe_api_base: str = ""
    stripe_webhook_secret: str = Field(default="", repr=False)
    stripe_prices: str = ""

    session_hours: float = Field(default=168.0, gt=0)
    session_cookie_secure: bool | None = None
    login_max_failures: int = Field(default=5, ge=1)
    login_ip_max_failures: int = Field(default=20, ge=1)
    login_window_seconds: float = Field(default=900.0, gt=0)

    @field_validator("node_name")
    @classmethod
    def _node_name_is_a_label(cls, value: str) -> str:
        return check_node_name(value)

    @field_validator("node_mx_hostnames")
    @classmethod
    def _node_mx_hostnames_parse(cls, value: str) -> str:
        parse_node_hostnames(value)
        return value

    @field_validator("ip_pool")
    @classmethod
    def _pool_parses(cls, value: str) -> str:
        parse_ip_pool(value)
        return value

    @field_validator("billing_prices", "stripe_prices")
    @classmethod
    def _price_table_parses(cls, value: str) -> str:
        parse_price_table(value)
        return value

    @model_validator(mode="after")
    def _stripe_needs_keys(self) -> Settings:
        if self.billing_provider == "stripe" and not (
            self.stripe_api_key and self.stripe_webhook_secret and self.stripe_prices
        ):
            raise ValueError(
                "ADBTD_BILLING_PROVIDER=stripe needs ADBTD_STRIPE_API_KEY, "
                "ADBTD_STRIPE_WEBHOOK_SECRET and ADBTD_STRIPE_PRICES"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_real_secret(self) -> Settings:
        if self.env == "production" and (
            self.secret_key.strip().lower() in PLACEHOLDER_SECRETS
            or len(self.secret_key) < MIN_SECRET_LENGTH
        ):
            raise ValueError(
                "ADBTD_SECRET_KEY must be a real secret of at least "
                f"{MIN_SECRET_LENGTH} characters outside the embedded default"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'adbtd.db').resolve()}"

    @property
    def dnsbl_zone_list(self) -> list[str]:
        """The DNS blocklists IPs are checked against, from ``ADBTD_DNSBL_ZONES``."""
        return [z.strip().strip(".").lower() for z in self.dnsbl_zones.replace(",", " ").split()]

    @property
    def cookie_secure(self) -> bool:
        """Session cookies are ``Secure`` everywhere but the embedded default (plain HTTP)."""
        if self.session_cookie_secure is not None:
            return self.session_cookie_secure
        return self.env != "embedded"

    @property
    def pdns_key(self) -> str:
        """The PowerDNS API key: the setting, else (own pdns_server) derived from the secret."""
        if self.pdns_api_key or not self.pdns_local:
            return self.pdns_api_key
        return hmac.new(self.secret_key.encode(), b"pdns-api-key", hashlib.sha256).hexdigest()

    def mx_hostname_for(self, node: str | None) -> str:
        """The inbound host name of ``node`` (``ADBTD_NODE_MX_HOSTNAMES``), else the
        deployment's ``ADBTD_MX_HOSTNAME`` (which may be empty)."""
        if node is None:
            return self.mx_hostname
        return parse_node_hostnames(self.node_mx_hostnames).get(node, self.mx_hostname)

    @property
    def base_url(self) -> str:
        """Public URL of the HTTP server, used in links such as ``checkoutUrl``."""
        return self.public_base_url.rstrip("/") or f"http://{self.http_host}:{self.http_port}"


def check_node_name(name: str) -> str:
    """A mail node's name: a lowercase DNS label (it is stored with each of the node's IPs)."""
    if not DNS_LABEL.fullmatch(name):
        raise ValueError(
            "a node name is 1-63 lowercase letters, digits and inner hyphens, e.g. mx-east-1"
        )
    return name


def parse_node_hostnames(spec: str) -> dict[str, str]:
    """``node=host`` pairs separated by commas, each node once; host names lowercased."""
    table: dict[str, str] = {}
    for pair in spec.replace(" ", "").split(","):
        if not pair:
            continue
        node, sep, host = pair.partition("=")
        check_node_name(node)
        host = host.rstrip(".").lower()
        labels = host.split(".")
        if (
            not sep
            or len(host) > 253
            or len(labels) < 2
            or not all(map(DNS_LABEL.fullmatch, labels))
        ):
            raise ValueError(f"expected node=host.name, not {pair!r}")
        if node in table:
            raise ValueError(f"node {node!r} is named twice")
        table[node] = host
    return table


def parse_ip_pool(spec: str) -> list[str]:
    """Expand ``a-b`` ranges, CIDRs and single addresses separated by commas or spaces."""
    addresses: list[str] = []
    for raw in spec.replace(",", " ").split():
        addresses.extend(expand_ip_item(raw))
    return addresses


def expand_ip_item(item: str) -> list[str]:
    """Expand one inventory item: ``127.0.1.1-127.0.1.20``, ``127.0.2.0/30`` or one address."""
    max_items = 65536
    if "-" in item:
        start_s, end_s = item.split("-", 1)
        start, end = ipaddress.IPv4Address(start_s), ipaddress.IPv4Address(end_s)
        if end < start or int(end) - int(start) >= max_items:
            raise ValueError(f"bad IP range {item!r}")
        return [str(ipaddress.IPv4Address(n)) for n in range(int(start), int(end) + 1)]
    if "/" in item:
        network = ipaddress.IPv4Network(item, strict=False)
        if network.num_addresses > max_items:
            raise ValueError(f"IP network {item!r} is too large")
        hosts = list(network.hosts()) or [network.network_address]
        return [str(h) for h in hosts]
    return [str(ipaddress.IPv4Address(item))]


def parse_price_table(spec: str) -> dict[str, dict[str, str]]:
    """Parse ``usd:domain=1.00,ip=5.00;eur:domain=0.90`` into ``{currency: {kind: value}}``."""
    table: dict[str, dict[str, str]] = {}
    for block in spec.split(";"):
        if not block.strip():
            continue
        currency, sep, items = block.partition(":")
        currency = currency.strip().lower()
        if not sep or len(currency) != 3 or not currency.isalpha():
            raise ValueError(f"bad price block {block!r}: expected 'usd:kind=value,...'")
        entries = table.setdefault(currency, {})
        for item in items.split(","):
            kind, eq, value = item.partition("=")
            if not eq or not kind.strip() or not value.strip():
                raise ValueError(f"bad price entry {item!r}: expected 'kind=value'")
            entries[kind.strip().lower()] = value.strip()
    return table


def build_settings(**overrides: object) -> Settings:
    """Read ``ADBTD_*`` variables (overrides win) and settle the embedded secret key."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if settings.env == "embedded" and not settings.secret_key:
        settings = settings.model_copy(update={"secret_key": _embedded_secret(settings.data_dir)})
    return settings


def _embedded_secret(data_dir: Path) -> str:
    """Generate the embedded default's secret once and keep it in the data directory.

    Written private from the first byte (a temp file created 0600), then linked into place,
    which fails if another process got there first: then both use the one that is there."""
    path = data_dir / "secret.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".secret.key.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip()
