"""Rendering is pure: deterministic output, the right table entries, headers, keys per domain."""

from __future__ import annotations

from dataclasses import replace
from itertools import takewhile
from pathlib import Path

import pytest

from adbtd.mailnode.keys import (
    dkim_public_record,
    generate_dkim_key,
    generate_mailbox_password,
    hash_mailbox_password,
)
from adbtd.mailnode.render import HEADER, RenderError, render_node, transport_name
from adbtd.mailnode.state import NodeConfig, NodeDomain, NodeMailbox, NodeState

KEY_A = generate_dkim_key()
KEY_B = generate_dkim_key()
HASH = "{BLF-CRYPT}$2b$04$abcdefghijklmnopqrstuu5Hf8C3y3kq3m3wzH4pW4E1b0o7cQJ1e"


def config(tmp: Path = Path("/srv/node"), **overrides: object) -> NodeConfig:
    values: dict[str, object] = {
        "base_dir": tmp,
        "hostname": "mail.example.test",
        "submission_port": 587,
        "imap_port": 993,
        "smtp_port": 25,
    }
    values.update(overrides)
    return NodeConfig(**values)  # type: ignore[arg-type]


def state() -> NodeState:
    return NodeState(
        ips=("127.0.1.2", "127.0.1.1"),
        domains=(
            NodeDomain("b.test", "s1", KEY_B, ("127.0.1.2",)),
            NodeDomain("a.test", "s1", KEY_A, ("127.0.1.1",)),
        ),
        mailboxes=(
            NodeMailbox("zed@a.test", HASH, "127.0.1.1"),
            NodeMailbox("Amy@b.test", HASH, "127.0.1.2"),
        ),
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_equal_states_render_byte_identical_files_whatever_the_input_order() -> None:
    shuffled = NodeState(
        ips=state().ips[::-1], domains=state().domains[::-1], mailboxes=state().mailboxes[::-1]
    )
    assert render_node(state(), config()) == render_node(shuffled, config())


def test_every_config_file_starts_with_the_generator_header() -> None:
    files = render_node(state(), config())
    for path, file in files.items():
        if path.endswith(".private"):
            # OpenDKIM reads a key as PEM only when the file starts with the PEM line
            assert file.content.startswith("-----BEGIN PRIVATE KEY-----")
        else:
            assert file.content.splitlines()[0] == f"# {HEADER}", path


def test_postfix_tables_map_mailboxes_domains_and_senders_to_their_ip_transport() -> None:
    files = render_node(state(), config())
    assert lines(files["postfix/virtual_domains"].content) == ["a.test OK", "b.test OK"]
    assert lines(files["postfix/virtual_mailboxes"].content) == ["amy@b.test OK", "zed@a.test OK"]
    assert lines(files["postfix/sender_login"].content) == [
        "amy@b.test amy@b.test",
        "zed@a.test zed@a.test",
    ]
    assert lines(files["postfix/sender_transport"].content) == [
        "@a.test out_127_0_1_1:",
        "@b.test out_127_0_1_2:",
        "amy@b.test out_127_0_1_2:",
        "zed@a.test out_127_0_1_1:",
    ]
    assert all(files[p].postmap for p in files if p.startswith("postfix/") and "." not in p)


def test_master_cf_has_listeners_and_a_bound_transport_per_ip() -> None:
    master = render_node(state(), config(listen_ips=("127.0.0.1",)))["postfix/master.cf"].content
    for ip in ("127.0.0.1", "127.0.1.1", "127.0.1.2"):
        assert f"{ip}:25 inet" in master
        assert f"{ip}:587 inet" in master
    assert "-o smtpd_tls_security_level=encrypt" in master
    assert "-o smtpd_tls_auth_only=yes" in master
    assert "reject_sender_login_mismatch" in master
    assert f"{transport_name('127.0.1.2')} unix" in master
    assert "-o smtp_bind_address=127.0.1.2" in master
    assert "out_127_0_0_1 unix" not in master  # extra listeners are not sending IPs
    assert master.count("-o smtp_helo_name=mail.example.test") == 2


def service(master: str, name: str) -> list[str]:
    """One master.cf entry: its line and the ``-o`` lines that follow it."""
    first, *rest = master.split(f"\n{name} ", 1)[1].splitlines()
    return [first, *(line.strip() for line in takewhile(lambda x: x.startswith("  "), rest))]


def test_helo_name_per_sending_ip_defaults_to_the_node_hostname() -> None:
    named = config(ip_hostnames={"127.0.1.2": "out2.example.test", "10.9.9.9": "x.example.test"})
    master = render_node(state(), named)["postfix/master.cf"].content
    assert "-o smtp_helo_name=mail.example.test" in service(master, "out_127_0_1_1")
    assert "-o smtp_helo_name=out2.example.test" in service(master, "out_127_0_1_2")
    assert "x.example.test" not in master  # not a sending IP of this node
    with pytest.raises(RenderError):
        render_node(state(), config(ip_hostnames={"127.0.1.2": "bad name\n"}))


def test_tenant_helo_names_apply_unless_the_operator_names_the_ip() -> None:
    tenant = replace(
        state(),
        ip_hostnames=(("127.0.1.1", "mail.a.test"), ("127.0.1.2", "mail.b.test")),
    )
    master = render_node(tenant, config(ip_hostnames={"127.0.1.2": "ptr2.example.test"}))[
        "postfix/master.cf"
    ].content
    assert "-o smtp_helo_name=mail.a.test" in service(master, "out_127_0_1_1")
    assert "-o smtp_helo_name=ptr2.example.test" in service(master, "out_127_0_1_2")
    with pytest.raises(RenderError):
        render_node(replace(state(), ip_hostnames=(("127.0.1.1", "x\nrelayhost=evil"),)), config())


def test_relay_keeps_the_sender_transport_and_pins_hosted_domains_to_lmtp() -> None:
    files = render_node(state(), config(outbound_relay="127.0.0.1:2525"))
    entries = lines(files["postfix/transport"].content)
    assert "* :[127.0.0.1]:2525" in entries
    assert "a.test lmtp:unix:/srv/node/dovecot-run/lmtp" in entries
    assert "smtp_dns_support_level = disabled" in files["postfix/main.cf"].content
    without = render_node(state(), config())
    assert lines(without["postfix/transport"].content) == []
    assert "smtp_dns_support_level" not in without["postfix/main.cf"].content


def test_dovecot_passwd_file_per_local_ip_ties_logins_to_the_tenant_ips() -> None:
    two_ips = replace(
        state(),
        ips=("127.0.1.1", "127.0.1.2", "127.0.1.3"),
        domains=(NodeDomain("a.test", "s1", KEY_A, ("127.0.1.1", "127.0.1.3")), state().domains[0]),
    )
    files = render_node(two_ips, config(listen_ips=("127.0.0.1",)))
    passwd = {
        path.rpartition("/")[2]: lines(f.content)
        for path, f in files.items()
        if path.startswith("dovecot/passwd.d/")
    }
    assert passwd == {
        "127.0.0.1": [],  # an extra listener, no tenant's: nobody logs in there
        "127.0.1.1": [f"zed@a.test:{HASH}::::::"],
        "127.0.1.2": [f"amy@b.test:{HASH}::::::"],
        "127.0.1.3": [f"zed@a.test:{HASH}::::::"],  # the workspace's other IP
    }
    users = files["dovecot/users"]
    assert lines(users.content) == ["amy@b.test:::::::", "zed@a.test:::::::"]  # no hashes
    for file in (users, files["dovecot/passwd.d/127.0.1.1"]):
        assert (file.mode, file.user, file.group, file.reread_on_mtime) == (
            0o640,
            "root",
            "dovecot",
            True,
        )
    conf = files["dovecot/dovecot.conf"].content
    assert "args = /srv/node/dovecot/passwd.d/%l\n" in conf
    assert "args = /srv/node/dovecot/users\n" in conf


def test_dovecot_listeners() -> None:
    files = render_node(state(), config())
    conf = files["dovecot/dovecot.conf"].content
    assert "address = 127.0.1.1, 127.0.1.2" in conf
    assert "port = 993" in conf
    assert "anvil-auth-penalty" not in conf
    assert (
        "anvil-auth-penalty"
        in render_node(state(), config(auth_penalty=False))["dovecot/dovecot.conf"].content
    )


def test_no_ips_means_no_imap_listener_on_any_address() -> None:
    conf = render_node(NodeState(), config())["dovecot/dovecot.conf"].content
    assert "    address =" not in conf
    assert "port = 0" in conf


def test_one_private_key_file_per_domain_with_tables_pointing_at_it() -> None:
    files = render_node(state(), config())
    key_a = files["opendkim/keys/a.test.s1.private"]
    assert key_a.content == KEY_A.strip() + "\n"
    assert (key_a.mode, key_a.user) == (0o600, "opendkim")
    assert lines(files["opendkim/key.table"].content) == [
        "a.test a.test:s1:/srv/node/opendkim/keys/a.test.s1.private",
        "b.test b.test:s1:/srv/node/opendkim/keys/b.test.s1.private",
    ]
    assert lines(files["opendkim/signing.table"].content) == ["*@a.test a.test", "*@b.test b.test"]
    assert "RequireSafeKeys         true" in files["opendkim/opendkim.conf"].content


@pytest.mark.parametrize(
    "bad",
    [
        replace(state(), domains=(NodeDomain("../etc", "s1", KEY_A, ()),)),
        replace(state(), domains=(NodeDomain("a.test", "s/1", KEY_A, ()),)),
        replace(state(), mailboxes=(NodeMailbox("a:b@a.test", HASH, "127.0.1.1"),)),
        replace(state(), mailboxes=(NodeMailbox("x@a.test", "plain\nx", "127.0.1.1"),)),
        replace(state(), mailboxes=(NodeMailbox("x@a.test", HASH, "::1"),)),
        replace(state(), mailboxes=(NodeMailbox("a/../../x@a.test", HASH, "127.0.1.1"),)),
        replace(state(), mailboxes=(NodeMailbox("..@a.test", HASH, "127.0.1.1"),)),
    ],
)
def test_values_that_could_escape_a_table_line_or_a_path_are_refused(bad: NodeState) -> None:
    with pytest.raises((RenderError, ValueError)):
        render_node(bad, config())


def test_dkim_record_and_password_helpers() -> None:
    record = dkim_public_record(KEY_A)
    assert record.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    password = generate_mailbox_password()
    assert len(password) >= 32
    assert generate_mailbox_password() != password
    assert hash_mailbox_password(password, cost=4).startswith("{BLF-CRYPT}$2b$04$")
    assert hash_mailbox_password(password, scheme="ARGON2ID").startswith("{ARGON2ID}$argon2id$")
    with pytest.raises(ValueError, match="ARGON2ID"):
        hash_mailbox_password("x" * 73)
