"""Settings: built from ADBTD_* variables by a function; placeholder secrets refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError

from adbtd.settings import build_settings, parse_ip_pool, parse_node_hostnames


def test_embedded_default_generates_and_keeps_a_secret(tmp_path: Path) -> None:
    first = build_settings(data_dir=tmp_path)
    second = build_settings(data_dir=tmp_path)
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("secret", ["", "changeme", "secret", "short-but-not-placeholder"])
def test_production_refuses_placeholder_secret(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValidationError, match="ADBTD_SECRET_KEY"):
        build_settings(env="production", data_dir=tmp_path, secret_key=secret)


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: build_settings(data_dir=tmp_path).secret_key, range(16)))
    assert len(keys) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no temp file left


def test_secrets_never_appear_in_errors_or_reprs(tmp_path: Path) -> None:
    secret = "sk_live_" + "q" * 40
    with pytest.raises(ValidationError) as refused:
        build_settings(
            env="production", data_dir=tmp_path, secret_key="changeme", stripe_api_key=secret
        )
    assert "changeme" not in str(refused.value)
    with pytest.raises(ValidationError) as bad_type:
        build_settings(data_dir=tmp_path, http_port=secret)
    assert secret not in str(bad_type.value)
    settings = build_settings(data_dir=tmp_path, stripe_api_key=secret, pdns_api_key=secret)
    for text in (repr(settings), str(settings)):
        assert secret not in text and settings.secret_key not in text


def test_production_accepts_real_secret(tmp_path: Path) -> None:
    settings = build_settings(env="production", data_dir=tmp_path, secret_key="x" * 40)
    assert settings.secret_key == "x" * 40
    assert not (tmp_path / "secret.key").exists()


def test_environment_variables_are_read_by_the_function(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ADBTD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ADBTD_SUBMISSION_PORT", "2525")
    monkeypatch.setenv("ADBTD_RATE_SEND_BURST", "3")
    settings = build_settings()
    assert settings.submission_port == 2525
    assert settings.rate_send_burst == 3
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'adbtd.db').resolve()}"


def test_ip_pool_ranges_cidrs_and_lists() -> None:
    assert parse_ip_pool("127.0.1.1-127.0.1.3, 127.0.2.9") == [
        "127.0.1.1",
        "127.0.1.2",
        "127.0.1.3",
        "127.0.2.9",
    ]
    assert parse_ip_pool("127.0.3.0/30") == ["127.0.3.1", "127.0.3.2"]
    assert len(parse_ip_pool("127.0.1.1-127.0.1.20")) == 20


@pytest.mark.parametrize("bad", ["127.0.1.5-127.0.1.1", "not-an-ip", "10.0.0.0/8", "1.2.3.400"])
def test_bad_ip_pool_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError):
        build_settings(data_dir=tmp_path, ip_pool=bad)


@pytest.mark.parametrize("name", ["main", "mx-east-1", "a", "9", "a" * 63])
def test_node_names_are_dns_labels(tmp_path: Path, name: str) -> None:
    assert build_settings(data_dir=tmp_path, node_name=name).node_name == name


@pytest.mark.parametrize("bad", ["", "Main", "mx_east", "-east", "east-", "a" * 64, "a.b", "é"])
def test_bad_node_names_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError):
        build_settings(data_dir=tmp_path, node_name=bad)


def test_node_mx_hostnames_name_each_nodes_inbound_host(tmp_path: Path) -> None:
    settings = build_settings(
        data_dir=tmp_path,
        mx_hostname="mx.example.com",
        node_mx_hostnames=" east=MX1.Example.com., west=mx2.example.com",
    )
    assert parse_node_hostnames(settings.node_mx_hostnames) == {
        "east": "mx1.example.com",
        "west": "mx2.example.com",
    }
    assert settings.mx_hostname_for("east") == "mx1.example.com"
    assert settings.mx_hostname_for("north") == "mx.example.com"  # the deployment's
    assert settings.mx_hostname_for(None) == "mx.example.com"
    assert build_settings(data_dir=tmp_path).mx_hostname_for("east") == ""


@pytest.mark.parametrize(
    "bad",
    ["east", "east=", "east=localhost", "East=mx.example.com", "e=a..b", "e=a.b,e=c.d", "e=-a.b"],
)
def test_bad_node_mx_hostnames_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError):
        build_settings(data_dir=tmp_path, node_mx_hostnames=bad)
