"""The database → NodeState loader: only provisioned things reach a node."""

from __future__ import annotations

from pathlib import Path

from adbtd.clock import utcnow
from adbtd.db.models import DedicatedIp, Domain, Mailbox
from adbtd.ids import new_id
from adbtd.mailnode.render import render_node
from adbtd.mailnode.state import NodeConfig
from adbtd.runtime import Runtime
from adbtd.services import node_sync, workspaces
from adbtd.services.node_state import DKIM_KEY_PURPOSE, load_node_state
from adbtd.services.secretbox import SecretBox

FAKE_PEM = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"


def test_loader_includes_only_provisioned_resources(runtime: Runtime) -> None:
    secret = runtime.settings.secret_key
    box = SecretBox(secret, DKIM_KEY_PURPOSE)
    now = utcnow()
    with runtime.db.transaction() as session:
        ws = workspaces.create_workspace(session, slug="acme", name="Acme")
        other = workspaces.create_workspace(session, slug="bare", name="Bare")
        ip = DedicatedIp(
            id=new_id("ip"),
            address="127.0.1.7",
            status="assigned",
            workspace_id=ws.id,
            allocated_at=now,
        )
        free = DedicatedIp(id=new_id("ip"), address="127.0.1.8", status="free")
        session.add_all([ip, free])
        dom = Domain(
            id=new_id("dom"),
            workspace_id=ws.id,
            name="acme.test",
            mode="byo",
            status="unverified",
            dkim_selector="s1",
            dkim_private_key_encrypted=box.seal(FAKE_PEM),
            created_at=now,
        )
        unkeyed = Domain(
            id=new_id("dom"),
            workspace_id=ws.id,
            name="pending.test",
            mode="byo",
            status="pending_provision",
            dkim_selector="s1",
            created_at=now,
        )
        no_ip = Domain(
            id=new_id("dom"),
            workspace_id=other.id,
            name="bare.test",
            mode="byo",
            status="unverified",
            dkim_selector="s1",
            dkim_private_key_encrypted=box.seal(FAKE_PEM),
            created_at=now,
        )
        session.add_all([dom, unkeyed, no_ip])
        session.flush()
        session.add_all(
            [
                Mailbox(
                    id=new_id("mb"),
                    workspace_id=ws.id,
                    domain_id=dom.id,
                    ip_id=ip.id,
                    email="alice@acme.test",
                    status="active",
                    password_hash="{X}a",
                    created_at=now,
                ),
                Mailbox(
                    id=new_id("mb"),
                    workspace_id=ws.id,
                    domain_id=dom.id,
                    ip_id=ip.id,
                    email="bob@acme.test",
                    status="pending_provision",
                    created_at=now,
                ),
            ]
        )
        before = node_sync.current_revision(session)
        node_sync.mark_node_changed(session)
    with runtime.db.transaction() as session:
        assert node_sync.current_revision(session) == before + 1
        state = load_node_state(session, secret_key=secret)
    assert state.ips == ("127.0.1.7",)
    assert [d.name for d in state.domains] == ["acme.test"]
    assert state.domains[0].dkim_private_key_pem == FAKE_PEM
    assert state.domains[0].ips == ("127.0.1.7",)
    assert [(m.email, m.ip) for m in state.mailboxes] == [("alice@acme.test", "127.0.1.7")]
    assert state.ip_hostnames == (("127.0.1.7", "mail.acme.test"),)
    with runtime.db.transaction() as session:
        plain = load_node_state(session, secret_key=secret, helo_per_domain=False)
    assert plain.ip_hostnames == ()


def test_a_row_the_node_cannot_render_is_left_off_and_the_rest_renders(
    runtime: Runtime, tmp_path: Path
) -> None:
    box = SecretBox(runtime.settings.secret_key, DKIM_KEY_PURPOSE)
    foreign_box = SecretBox("another secret key entirely, 40 characters", DKIM_KEY_PURPOSE)
    now = utcnow()
    with runtime.db.transaction() as session:
        ws = workspaces.create_workspace(session, slug="mixed", name="Mixed")
        ip = DedicatedIp(
            id=new_id("ip"), address="127.0.1.9", status="assigned", workspace_id=ws.id
        )
        session.add(ip)
        domains = {
            name: Domain(
                id=new_id("dom"),
                workspace_id=ws.id,
                name=name,
                mode="byo",
                status="unverified",
                dkim_selector=selector,
                dkim_private_key_encrypted=sealer.seal(FAKE_PEM),
                created_at=now,
            )
            for name, selector, sealer in (
                ("good.test", "s1", box),
                ("badselector.test", "s1 x", box),
                ("otherkey.test", "s1", foreign_box),
            )
        }
        session.add_all(domains.values())
        session.flush()
        session.add_all(
            Mailbox(
                id=new_id("mb"),
                workspace_id=ws.id,
                domain_id=domains["good.test"].id,
                ip_id=ip.id,
                email=email,
                status="active",
                password_hash=hashed,
                created_at=now,
            )
            for email, hashed in (
                ("fine@good.test", "{BLF-CRYPT}$2b$10$abc"),
                ("broken@good.test", "{BLF-CRYPT}with space\nnewline"),
            )
        )
    with runtime.db.transaction() as session:
        state = load_node_state(session, secret_key=runtime.settings.secret_key)
    assert [d.name for d in state.domains] == ["good.test"]
    assert [m.email for m in state.mailboxes] == ["fine@good.test"]
    config = NodeConfig(
        base_dir=tmp_path, hostname="mail.x.test", submission_port=1, imap_port=2, smtp_port=3
    )
    rendered = render_node(state, config)  # renders: nothing left in it can break a table
    assert "fine@good.test" in rendered["dovecot/passwd.d/127.0.1.9"].content
