"""Bought domains on the embedded default: checked at the platform's own PowerDNS."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adbtd.adapters.dns_resolver import managed_resolver_spec
from adbtd.cli.serve import embedded_defaults
from adbtd.settings import build_settings


def test_managed_domains_use_the_local_pdns_when_it_runs(tmp_path: Path) -> None:
    plain = build_settings(data_dir=tmp_path, dns_resolvers="127.0.0.9:53")
    assert managed_resolver_spec(plain) == "127.0.0.9:53"
    local = build_settings(data_dir=tmp_path, pdns_local=True, pdns_dns_port=10099)
    assert managed_resolver_spec(local) == "127.0.0.1:10099"
    explicit = build_settings(
        data_dir=tmp_path, pdns_local=True, managed_dns_resolvers="127.0.0.8:5300"
    )
    assert managed_resolver_spec(explicit) == "127.0.0.8:5300"


@pytest.mark.skipif(
    shutil.which("pdns_server", path="/usr/sbin:/usr/bin") is None,
    reason="pdns-server is installed by scripts/install-system.sh",
)
def test_serve_runs_its_own_pdns_on_the_embedded_default_only(tmp_path: Path) -> None:
    chosen = embedded_defaults(build_settings(data_dir=tmp_path))
    assert (chosen.pdns_local, chosen.dns_hosting_provider) == (True, "pdns")
    kept = embedded_defaults(build_settings(data_dir=tmp_path, pdns_local=False))
    assert (kept.pdns_local, kept.dns_hosting_provider) == (False, "local")
    prod = embedded_defaults(
        build_settings(env="production", data_dir=tmp_path, secret_key="s" * 40)
    )
    assert prod.pdns_local is False
