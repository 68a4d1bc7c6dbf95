"""POST /mailboxes/:id/send against the real node: delivery, envelope, errors, property test."""

from __future__ import annotations

import re
from collections.abc import Callable
from email import message_from_bytes, policy
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import update

from adbtd.db.models import Mailbox
from adbtd.runtime import Runtime
from adbtd.services.mime_reader import read_message
from adbtd.settings import Settings
from tests.conftest import Tenant
from tests.integration.conftest import RunningNode, SmtpSink
from tests.support.mail_env import MailEnv, node_settings, provision_mail

pytestmark = pytest.mark.integration

TRACE_HEADERS = {"return-path", "delivered-to", "received", "dkim-signature", "x-original-to"}


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], mailnode: RunningNode) -> Settings:
    return node_settings(settings_factory, mailnode, rate_send_burst=1000)


@pytest.fixture
def env(runtime: Runtime, tenant: Tenant, mailnode: RunningNode, dkim_key: str) -> MailEnv:
    return provision_mail(runtime, tenant, mailnode, dkim_key)


@pytest.fixture
def api(client: TestClient, env: MailEnv) -> TestClient:
    client.headers.update(env.tenant.headers)
    return client


def send(api: TestClient, box_id: str, **body: Any) -> Any:
    return api.post(f"/api/v1/mailboxes/{box_id}/send", json=body)


def test_send_to_a_hosted_mailbox(api: TestClient, env: MailEnv) -> None:
    resp = send(
        api,
        env.alice.id,
        to=env.bob.email,
        subject="first send from adbtd",
        text="Hello from my own IP.",
        html="<p>Hello</p>",
        fromName="Alice at Acme",
        replyTo=env.alice.email,
    )
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert set(data) == {"messageId", "accepted", "rejected", "response"}
    assert re.fullmatch(rf"<[0-9a-f]{{32}}@{re.escape(env.domain)}>", data["messageId"])
    assert data["accepted"] == [env.bob.email]
    assert data["rejected"] == []
    assert re.fullmatch(r"250 2\.0\.0 Ok: queued as [0-9A-Za-z]+", data["response"])
    _, raw = env.wait_for(env.bob, lambda raw: data["messageId"].encode() in raw)
    delivered = message_from_bytes(raw, policy=policy.default)
    assert delivered["From"] == f"Alice at Acme <{env.alice.email}>"
    assert delivered["Reply-To"] == env.alice.email
    assert delivered["DKIM-Signature"] is not None
    assert delivered.get_content_type() == "multipart/alternative"


def test_bcc_never_in_headers_and_partial_envelope(
    api: TestClient, env: MailEnv, smtp_sink: SmtpSink
) -> None:
    outside = "audit-bcc@outside.example"
    resp = send(
        api,
        env.alice.id,
        to=[env.bob.email],
        cc=["cc-person@outside.example"],
        bcc=[outside],
        subject="with bcc",
        text="x",
    )
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["accepted"] == [env.bob.email, "cc-person@outside.example", outside]
    relayed = smtp_sink.wait_for(outside)
    assert b"audit-bcc" not in relayed.content
    assert relayed.peer == env.ip  # left through the tenant's dedicated IP
    _, raw = env.wait_for(env.bob, lambda raw: data["messageId"].encode() in raw)
    assert b"audit-bcc" not in raw


def test_validation_errors_are_400_and_send_nothing(api: TestClient, env: MailEnv) -> None:
    cases: list[dict[str, Any]] = [
        {"to": env.bob.email, "subject": "a\r\nBcc: x@y.com", "text": "x"},
        {"to": env.bob.email, "subject": "s", "text": "x", "fromName": "A\nB"},
        {"to": env.bob.email, "subject": "s", "text": "x", "replyTo": "x@y.com\r\n"},
        {"to": "not-an-address", "subject": "s", "text": "x"},
        {"to": [f"r{i}@x.example" for i in range(51)], "subject": "s", "text": "x"},
        {"to": env.bob.email, "subject": "s"},
        {"to": env.bob.email, "subject": "s", "text": "x" * 5_000_001},
        {"to": env.bob.email, "subject": "s", "text": "x", "from": "ceo@bank.example"},
        {"to": env.bob.email, "subject": 5, "text": "x"},
        {"to": env.bob.email, "text": "x"},
    ]
    for body in cases:
        resp = send(api, env.alice.id, **body)
        assert resp.status_code == 400, (body, resp.text)
        assert resp.json()["error"]["code"] == "validation_error"
    assert env.runtime.smtp_pool.pool.stats()["open"] == 0
    for raw in (
        b"{nope",
        b'{"to": "%s", "subject": "\\ud800", "text": "x"}' % env.bob.email.encode(),
    ):
        resp = api.post(
            f"/api/v1/mailboxes/{env.alice.id}/send",
            content=raw,
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 400, resp.text


def test_unknown_foreign_and_inactive_mailboxes(
    api: TestClient, env: MailEnv, make_tenant: Callable[..., Tenant]
) -> None:
    body = {"to": env.bob.email, "subject": "s", "text": "x"}
    assert send(api, "mb_" + "x" * 20, **body).status_code == 404
    assert send(api, "nonsense", **body).status_code == 400  # a malformed id
    other = make_tenant()
    marker = {**body, "subject": "must-never-arrive"}
    foreign = api.post(f"/api/v1/mailboxes/{env.alice.id}/send", json=marker, headers=other.headers)
    assert foreign.status_code == 404
    # Nothing was sent: a real send after it arrives, the foreign one never does.
    assert send(api, env.alice.id, **{**body, "subject": "after-foreign"}).status_code == 200
    env.wait_for(env.bob, lambda raw: b"after-foreign" in raw)
    with env.imap(env.bob) as inbox:
        inbox.select("INBOX", readonly=True)
        assert inbox.search(None, "SUBJECT", "must-never-arrive")[1] == [b""]
    with env.runtime.db.transaction() as session:
        session.execute(
            update(Mailbox).where(Mailbox.id == env.alice.id).values(status="pending_provision")
        )
    env.runtime.evict_mailbox(env.alice.id)  # as the services do after a change
    resp = send(api, env.alice.id, **body)
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "conflict"


def test_whole_message_refused_is_502_with_the_server_reply(api: TestClient, env: MailEnv) -> None:
    resp = send(api, env.alice.id, to="nobody-here@" + env.domain, subject="s", text="x")
    assert resp.status_code == 502, resp.text
    error = resp.json()["error"]
    assert error["code"] == "smtp_error"
    assert re.search(r"\b550 5\.1\.1\b", error["message"]), error["message"]


def test_partial_refusal_fills_rejected(api: TestClient, env: MailEnv) -> None:
    missing = "nobody-here@" + env.domain
    resp = send(api, env.alice.id, to=[env.bob.email, missing], subject="s", text="x")
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["accepted"] == [env.bob.email]
    assert data["rejected"] == [missing]


def test_wrong_password_is_502_smtp_error(api: TestClient, env: MailEnv) -> None:
    from adbtd.services.mailboxes import PASSWORD_PURPOSE
    from adbtd.services.secretbox import SecretBox

    sealed = SecretBox(env.runtime.settings.secret_key, PASSWORD_PURPOSE).seal("wrong-password")
    with env.runtime.db.transaction() as session:
        session.execute(
            update(Mailbox).where(Mailbox.id == env.alice.id).values(password_encrypted=sealed)
        )
    resp = send(api, env.alice.id, to=env.bob.email, subject="s", text="x")
    assert resp.status_code == 502
    error = resp.json()["error"]
    assert error["code"] == "smtp_error"
    assert "wrong-password" not in resp.text


def test_send_reuses_one_warm_connection(api: TestClient, env: MailEnv) -> None:
    for i in range(5):
        resp = send(api, env.alice.id, to=env.bob.email, subject=f"n{i}", text="x")
        assert resp.status_code == 200, resp.text
    assert env.runtime.smtp_pool.pool.stats() == {"open": 1, "idle": 1, "busy": 0}


header_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=120,
)
body_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400)
name_text = st.text(max_size=40)


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    subject=header_text,
    from_name=st.one_of(st.none(), header_text),
    to_name=name_text,
    cc_name=st.one_of(st.none(), name_text),
    reply_name=st.one_of(st.none(), name_text),
    with_bcc=st.booleans(),
    text=st.one_of(st.none(), body_text),
    html=st.one_of(st.none(), body_text),
)
def test_property_any_unicode_gives_200_or_400_and_exact_headers(
    api: TestClient,
    env: MailEnv,
    subject: str,
    from_name: str | None,
    to_name: str,
    cc_name: str | None,
    reply_name: str | None,
    with_bcc: bool,
    text: str | None,
    html: str | None,
) -> None:
    body: dict[str, Any] = {"to": f"{to_name} <{env.bob.email}>", "subject": subject}
    if cc_name is not None:
        body["cc"] = [f"{cc_name} <{env.alice.email}>"]
    if reply_name is not None:
        body["replyTo"] = f"{reply_name} <replies@{env.domain}>"
    if with_bcc:
        body["bcc"] = [f"hidden@{env.domain}"]
    for key, value in (("fromName", from_name), ("text", text), ("html", html)):
        if value is not None:
            body[key] = value
    resp = send(api, env.alice.id, **body)
    assert resp.status_code in (200, 400), resp.text
    fields = (subject, from_name or "", to_name, cc_name or "", reply_name or "")
    if any(c in f for f in fields for c in "\r\n\x00") or not (text or html):
        assert resp.status_code == 400, (body, resp.text)
        return
    assert resp.status_code == 200, (body, resp.text)
    data = resp.json()["data"]
    message_id = data["messageId"]
    if with_bcc:
        assert f"hidden@{env.domain}" in data["accepted"] + data["rejected"]
    _, raw = env.wait_for(env.bob, lambda raw: message_id.encode() in raw)
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = {
        line.split(b":", 1)[0].decode().lower()
        for line in head.split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    }
    expected = {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"}
    if not (text and html):
        expected.add("content-transfer-encoding")
    if cc_name is not None:
        expected.add("cc")
    if reply_name is not None:
        expected.add("reply-to")
    assert names - TRACE_HEADERS == expected  # never a Bcc
    assert b"hidden@" not in head
    parsed = read_message(raw)
    assert parsed.headers.subject == subject
    assert parsed.headers.message_id == message_id
    [sender] = parsed.headers.from_
    assert sender.endswith(f"<{env.alice.email}>") if from_name else sender == env.alice.email
    [recipient] = parsed.headers.to
    assert recipient.rstrip(">").endswith(env.bob.email)
    if cc_name is not None:
        assert [c.rsplit("<", 1)[-1].rstrip(">") for c in parsed.headers.cc] == [env.alice.email]


def test_evict_mailbox_makes_a_state_change_visible_at_once(api: TestClient, env: MailEnv) -> None:
    body = {"to": env.bob.email, "subject": "s", "text": "x"}
    assert send(api, env.alice.id, **body).status_code == 200
    with env.runtime.db.transaction() as session:
        session.execute(update(Mailbox).where(Mailbox.id == env.alice.id).values(status="failed"))
    env.runtime.evict_mailbox(env.alice.id)  # what a status change, deletion or new password does
    assert send(api, env.alice.id, **body).status_code == 409
    assert env.runtime.smtp_pool.pool.open_count(env.alice.id) == 0


def test_a_workspace_change_forgets_its_cached_accounts(api: TestClient, env: MailEnv) -> None:
    body = {"to": env.bob.email, "subject": "s", "text": "x"}
    assert send(api, env.alice.id, **body).status_code == 200
    with env.runtime.db.transaction() as session:
        session.execute(update(Mailbox).where(Mailbox.id == env.alice.id).values(status="failed"))
    env.runtime.mail_accounts.forget_workspace(env.tenant.workspace_id)
    assert send(api, env.alice.id, **body).status_code == 409
