"""GET /mailboxes/:id/messages and /messages/:uid against the real Dovecot."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from adbtd.api.app import create_app
from adbtd.db.models import Mailbox
from adbtd.mailnode.tls import tls_paths
from adbtd.runtime import Runtime
from adbtd.services.mailboxes import PASSWORD_PURPOSE
from adbtd.services.secretbox import SecretBox
from adbtd.settings import Settings
from tests.conftest import Tenant
from tests.integration.conftest import RunningNode
from tests.support.imap_recorder import ImapRecorder
from tests.support.mail_env import MailEnv, node_settings, provision_mail

pytestmark = pytest.mark.integration

LIST_KEYS = {"folder", "total", "messages", "nextBefore", "uidValidity"}
SUMMARY_KEYS = {"uid", "messageId", "subject", "from", "to", "cc", "date", "flags", "size", "seen"}
DETAIL_KEYS = {
    "uid",
    "messageId",
    "subject",
    "from",
    "to",
    "cc",
    "date",
    "text",
    "html",
    "attachments",
    "flags",
    "seen",
}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], mailnode: RunningNode) -> Settings:
    return node_settings(settings_factory, mailnode, rate_fetch_burst=1000)


@pytest.fixture
def env(runtime: Runtime, tenant: Tenant, mailnode: RunningNode, dkim_key: str) -> MailEnv:
    return provision_mail(runtime, tenant, mailnode, dkim_key)


@pytest.fixture
def api(client: TestClient, env: MailEnv) -> TestClient:
    client.headers.update(env.tenant.headers)
    return client


def sample(i: int, **extra: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = extra.get("from", "Lena <lena@example.com>")
    msg["To"] = "bob@acme.example"
    if "cc" in extra:
        msg["Cc"] = extra["cc"]
    msg["Subject"] = extra.get("subject", f"message {i}")
    msg["Date"] = f"Sun, 03 May 2026 08:{i % 60:02d}:22 +0000"
    msg["Message-ID"] = f"<m{i}@example.com>"
    msg.set_content(extra.get("text", f"body {i}"))
    return msg.as_bytes()


def listing(api: TestClient, box_id: str, **params: Any) -> Any:
    return api.get(f"/api/v1/mailboxes/{box_id}/messages", params=params)


def fetching(api: TestClient, box_id: str, uid: int | str, **params: Any) -> Any:
    return api.get(f"/api/v1/mailboxes/{box_id}/messages/{uid}", params=params)


def test_list_pages_newest_first_with_exclusive_before(api: TestClient, env: MailEnv) -> None:
    uids = [env.append(env.bob, sample(i)) for i in range(30)]
    first = listing(api, env.bob.id)
    assert first.status_code == 200, first.text
    data = first.json()["data"]
    assert set(data) == LIST_KEYS
    assert data["folder"] == "INBOX"
    assert data["total"] == 30
    assert isinstance(data["uidValidity"], int)
    got = [m["uid"] for m in data["messages"]]
    assert got == sorted(uids, reverse=True)[:25]
    assert data["nextBefore"] == got[-1]
    top = data["messages"][0]
    assert set(top) == SUMMARY_KEYS
    assert top["subject"] == "message 29"
    assert top["from"] == ["Lena <lena@example.com>"]
    assert top["to"] == ["bob@acme.example"]
    assert top["cc"] == []
    assert top["messageId"] == "<m29@example.com>"
    assert top["date"] == "2026-05-03T08:29:22.000Z"
    assert top["flags"] == [] and top["seen"] is False
    assert top["size"] == len(sample(29).replace(b"\n", b"\r\n"))
    second = listing(api, env.bob.id, before=data["nextBefore"]).json()["data"]
    assert [m["uid"] for m in second["messages"]] == sorted(uids, reverse=True)[25:]
    assert second["nextBefore"] is None
    assert second["total"] == 30
    exact = listing(api, env.bob.id, limit=5, before=uids[5]).json()["data"]
    assert [m["uid"] for m in exact["messages"]] == uids[:5][::-1]
    assert exact["nextBefore"] is None
    small = listing(api, env.bob.id, limit=1).json()["data"]
    assert [m["uid"] for m in small["messages"]] == [uids[-1]]
    assert small["nextBefore"] == uids[-1]
    assert listing(api, env.bob.id, before=1).json()["data"]["messages"] == []


def test_list_bounds_are_400(api: TestClient, env: MailEnv) -> None:
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"before": 0}, {"before": -3}):
        resp = listing(api, env.bob.id, **params)
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["error"]["code"] == "validation_error"
    assert listing(api, env.bob.id, limit=100).status_code == 200


def test_empty_folder(api: TestClient, env: MailEnv) -> None:
    data = listing(api, env.alice.id).json()["data"]
    assert data["total"] == 0 and data["messages"] == [] and data["nextBefore"] is None


def test_listing_and_fetching_never_change_flags_unless_asked(
    api: TestClient, env: MailEnv
) -> None:
    uid = env.append(env.bob, sample(1, cc="Carol <carol@example.com>"))
    assert listing(api, env.bob.id).status_code == 200
    resp = fetching(api, env.bob.id, uid)
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert set(data) == DETAIL_KEYS
    assert data["from"] == "Lena <lena@example.com>"
    assert data["to"] == "bob@acme.example"
    assert data["cc"] == "Carol <carol@example.com>"
    assert data["text"] == "body 1\n"
    assert data["html"] is None
    assert data["attachments"] == []
    assert data["seen"] is False and data["flags"] == []
    assert ISO_MS.match(data["date"])
    assert env.flags(env.bob, uid) == []
    marked = fetching(api, env.bob.id, uid, markSeen=1).json()["data"]
    assert marked["seen"] is True and "\\Seen" in marked["flags"]
    assert env.flags(env.bob, uid) == ["\\Seen"]
    again = listing(api, env.bob.id).json()["data"]["messages"][0]
    assert again["seen"] is True and again["flags"] == ["\\Seen"]
    assert fetching(api, env.bob.id, uid, markSeen=2).status_code == 400


def test_fetch_full_message_with_attachments(api: TestClient, env: MailEnv) -> None:
    msg = EmailMessage()
    msg["From"] = "=?utf-8?q?L=C3=A9na?= <lena@example.com>"
    msg["To"] = "alice@acme.com"
    msg["Subject"] = "saw the launch — congrats"
    msg.set_content("saw the launch — congrats…")
    msg.add_alternative("<p>saw the launch — congrats…</p>", subtype="html")
    msg.add_attachment(
        b"%PDF-1.4" * 1000, maintype="application", subtype="pdf", filename="deck.pdf"
    )
    uid = env.append(env.bob, msg.as_bytes())
    data = fetching(api, env.bob.id, uid).json()["data"]
    assert data["subject"] == "saw the launch — congrats"
    assert data["from"] == "Léna <lena@example.com>"
    assert data["cc"] is None
    assert data["messageId"] is None
    assert data["text"] == "saw the launch — congrats…\n"
    assert data["html"] == "<p>saw the launch — congrats…</p>\n"
    assert data["attachments"] == [
        {"filename": "deck.pdf", "contentType": "application/pdf", "size": 8000, "contentId": None}
    ]


def test_unknown_folder_uid_and_mailbox_are_404(
    api: TestClient, env: MailEnv, make_tenant: Callable[..., Tenant]
) -> None:
    uid = env.append(env.bob, sample(1))
    cases = [
        listing(api, env.bob.id, folder="NoSuchFolder"),
        fetching(api, env.bob.id, uid, folder="NoSuchFolder"),
        fetching(api, env.bob.id, uid + 1000),
        listing(api, "mb_" + "z" * 20),
        api.get(f"/api/v1/mailboxes/{env.bob.id}/messages", headers=make_tenant().headers),
        api.get(f"/api/v1/mailboxes/{env.bob.id}/messages/{uid}", headers=make_tenant().headers),
    ]
    for resp in cases:
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"]["code"] == "not_found"
    assert fetching(api, env.bob.id, "abc").status_code == 400
    assert listing(api, "bogus").status_code == 400  # a malformed mailbox id
    assert fetching(api, env.bob.id, 0).status_code == 400


def test_non_ascii_and_quoted_folder_names(api: TestClient, env: MailEnv) -> None:
    conn = env.imap(env.bob)
    try:
        for name in ("&AMQ-rger-&ZeVnLIqe-", '"we\\"ird \\\\ one"'):  # Ärger-日本語, we"ird \ one
            typ, data = conn.create(name)
            assert typ == "OK", data
            typ, data = conn.append(name, None, None, sample(7))
            assert typ == "OK", data
    finally:
        conn.logout()
    for folder in ("Ärger-日本語", 'we"ird \\ one'):
        resp = listing(api, env.bob.id, folder=folder)
        assert resp.status_code == 200, (folder, resp.text)
        data = resp.json()["data"]
        assert data["folder"] == folder and data["total"] == 1
        uid = data["messages"][0]["uid"]
        assert fetching(api, env.bob.id, uid, folder=folder).json()["data"]["text"] == "body 7\n"


def test_imap_login_failure_is_502(api: TestClient, env: MailEnv) -> None:
    sealed = SecretBox(env.runtime.settings.secret_key, PASSWORD_PURPOSE).seal("not-it")
    with env.runtime.db.transaction() as session:
        session.execute(
            update(Mailbox).where(Mailbox.id == env.bob.id).values(password_encrypted=sealed)
        )
    resp = listing(api, env.bob.id)
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "imap_error"
    assert "not-it" not in resp.text


def test_mailbox_not_active_is_409(api: TestClient, env: MailEnv) -> None:
    with env.runtime.db.transaction() as session:
        session.execute(update(Mailbox).where(Mailbox.id == env.bob.id).values(status="failed"))
    assert listing(api, env.bob.id).status_code == 409
    assert fetching(api, env.bob.id, 1).status_code == 409


@pytest.fixture
def recorded(
    env: MailEnv, settings_factory: Callable[..., Settings], mailnode: RunningNode
) -> Iterator[tuple[TestClient, ImapRecorder]]:
    cert, key = tls_paths(mailnode.config)
    recorder = ImapRecorder(env.ip, (env.ip, mailnode.config.imap_port), cert, key)
    recorder.start()
    runtime = Runtime.from_settings(
        node_settings(settings_factory, mailnode, imap_port=recorder.port, rate_fetch_burst=1000)
    )
    try:
        with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
            client.headers.update(env.tenant.headers)
            yield client, recorder
    finally:
        runtime.close()
        recorder.stop()


def test_repeat_reads_ask_only_for_flags_and_still_see_every_change(
    recorded: tuple[TestClient, ImapRecorder], env: MailEnv
) -> None:
    client, recorder = recorded
    uids = [env.append(env.bob, sample(i)) for i in range(3)]
    path = f"/api/v1/mailboxes/{env.bob.id}/messages"

    def read(url: str) -> tuple[Any, list[tuple[str, bytes]]]:
        mark = recorder.mark()
        resp = client.get(url)
        assert resp.status_code == 200, resp.text
        return resp.json()["data"], recorder.commands_since(mark)

    first, commands = read(path)
    assert [verb for verb, _ in commands] == ["CAPABILITY", "LOGIN", "EXAMINE", "FETCH"]
    assert b"HEADER.FIELDS" in commands[-1][1]
    again, commands = read(path)
    assert again == first
    # Same folder, same connection: NOOP for news, then flags only (headers are immutable).
    assert [(verb, args) for verb, args in commands] == [
        ("NOOP", b""),
        ("FETCH", b"1:3 (UID FLAGS)"),
    ]

    # Another session flags one, deletes one and a new message arrives.
    other = env.imap(env.bob)
    try:
        other.select("INBOX")
        other.uid("STORE", str(uids[0]), "+FLAGS", "(\\Flagged)")
        other.uid("STORE", str(uids[1]), "+FLAGS", "(\\Deleted)")
        other.expunge()
    finally:
        other.logout()
    newest = env.append(env.bob, sample(7, subject="arrived later"))
    changed, commands = read(path)
    assert changed["total"] == 3
    assert [m["uid"] for m in changed["messages"]] == [newest, uids[2], uids[0]]
    assert changed["messages"][0]["subject"] == "arrived later"
    assert changed["messages"][2]["flags"] == ["\\Flagged"]
    fetched = [args for verb, args in commands if verb == "UID FETCH"]
    assert fetched == [
        f"{newest} (UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS ".encode()
        + b"(MESSAGE-ID SUBJECT FROM TO CC DATE)])"
    ]  # only the new one is read whole

    detail, commands = read(f"{path}/{uids[2]}")
    assert detail["text"] == "body 2\n"
    again, commands = read(f"{path}/{uids[2]}")
    assert again == detail
    assert commands == [("NOOP", b""), ("UID FETCH", f"{uids[2]} (UID FLAGS)".encode())]
    gone = client.get(f"{path}/{uids[1]}")
    assert gone.status_code == 404


HOSTILE_FOLDERS = [
    'INBOX" UID STORE 1:* +FLAGS (\\Deleted)',
    "INBOX {5}",
    'INBOX\\" EXPUNGE',
    "INBOX) (UID 1:*",
    "* LOGOUT",
    "INBOX\t\x01\x7f",
    '"""',
    "\\",
    '日本語 " {0}',
    "%*",
]


def test_hostile_folder_names_reach_the_server_as_one_command(
    recorded: tuple[TestClient, ImapRecorder], env: MailEnv
) -> None:
    client, recorder = recorded
    uid = env.append(env.bob, sample(1))
    assert client.get(f"/api/v1/mailboxes/{env.bob.id}/messages").status_code == 200
    for folder in HOSTILE_FOLDERS:
        for path in ("messages", f"messages/{uid}"):
            mark = recorder.mark()
            resp = client.get(f"/api/v1/mailboxes/{env.bob.id}/{path}", params={"folder": folder})
            assert resp.status_code == 404, (folder, resp.text)
            commands = [c for c in recorder.commands_since(mark) if c[0] != "NOOP"]
            assert [verb for verb, _ in commands] == ["EXAMINE"], (folder, commands)
    for folder in ("INBOX\r\nA1 LOGOUT", "a\nb", "x\x00y", "x" * 256, ""):
        mark = recorder.mark()
        resp = client.get(f"/api/v1/mailboxes/{env.bob.id}/messages", params={"folder": folder})
        assert resp.status_code == 400, (folder, resp.text)
        assert recorder.commands_since(mark) == []
    assert env.flags(env.bob, uid) == []
    listed = client.get(f"/api/v1/mailboxes/{env.bob.id}/messages").json()["data"]
    assert [m["uid"] for m in listed["messages"]] == [uid]


def nested(depth: int) -> bytes:
    head, tail = b"Subject: deep\r\n", b""
    for level in range(depth):
        head += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
        tail = b"\r\n--b%d--\r\n" % level + tail
    return head + b"Content-Type: text/plain\r\n\r\ndeep" + tail


def many_parts(count: int) -> bytes:
    parts = b"".join(
        b"--zz\r\nContent-Type: application/x-p\r\nContent-Disposition: attachment; "
        b"filename=p%d.bin\r\n\r\n%d\r\n" % (i, i)
        for i in range(count)
    )
    return (
        b"Subject: many\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: text/plain\r\n\r\nfirst\r\n" + parts + b"--zz--\r\n"
    )


HOSTILE_MIME = {
    "deep": nested(3000),
    "many-parts": many_parts(5000),
    "huge-header": b"Subject: " + b"x" * 2_000_000 + b"\r\nFrom: a@b.c\r\n\r\nbody\r\n",
    "broken-base64": b"Subject: b64\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%aGk=!!\r\n",
    "bad-charset": (
        b"Subject: =?x-nope?b?aGk=?=\r\nContent-Type: text/plain; charset=nope\r\n\r\nhi"
    ),
    "8bit-garbage": b"Subject: \xff\xfe\xc3\r\nFrom: \xe9\xe9 <a@b.c>\r\n\r\n\xff\xfe\x00body",
    "nested-comments": b"From: " + b"(" * 50_000 + b"\r\nSubject: c\r\n\r\nx",
    "broken-encoded-words": (
        b"Subject: =?utf-8?b?A?=\r\nFrom: =?utf-8?b?A?= <a@b.c>\r\n"
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nok\r\n--zz\r\n"
        b"Content-Type: application/pdf; name==?utf-8?b?A?=\r\n\r\nx\r\n--zz--\r\n"
    ),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_MIME))
def test_hostile_mime_is_read_within_bounds(api: TestClient, env: MailEnv, kind: str) -> None:
    uid = env.append(env.bob, HOSTILE_MIME[kind])
    started = time.monotonic()
    resp = fetching(api, env.bob.id, uid)
    elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    assert elapsed < 5.0, elapsed
    listed = listing(api, env.bob.id)
    assert listed.status_code == 200, listed.text
    data = resp.json()["data"]
    if kind == "many-parts":
        assert data["text"] == "first"
        assert 100 < len(data["attachments"]) < 5000
    if kind == "huge-header":
        assert data["text"] == "body\n"
    if kind == "broken-base64":
        assert data["text"] == "hi"
