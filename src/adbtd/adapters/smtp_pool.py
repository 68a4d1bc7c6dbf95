"""Submit messages as a mailbox over warm, authenticated SMTP connections (STARTTLS + AUTH).

The envelope is sent step by step (MAIL, RCPT..., DATA) rather than with ``sendmail`` so that
the server's final reply (``250 2.0.0 Ok: queued as ABC123``) reaches the caller. A dropped
connection is retried on a fresh one only before DATA starts: after that the server may have
queued the message, and a retry could deliver it twice.
"""

from __future__ import annotations

import re
import smtplib
import socket
from dataclasses import dataclass

from adbtd.adapters.pool import (
    ClientTls,
    ConnectionDropped,
    KeyedPool,
    Login,
    PoolBusy,
    PoolLimits,
)
from adbtd.errors import SmtpFailure

DEFAULT_LIMITS = PoolLimits(max_per_key=4, max_total=64, idle_timeout=60.0, check_after=1.0)
CLOSE_TIMEOUT = 2.0
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """Which recipients the server took, which it refused (with its reply), its final reply."""

    accepted: list[str]
    rejected: dict[str, str]
    response: str


class SmtpConnector:
    """Opens submission connections: EHLO, STARTTLS, EHLO, AUTH as the mailbox."""

    def __init__(self, *, tls: ClientTls, local_hostname: str, timeout: float = 30.0) -> None:
        self.tls = tls
        self.local_hostname = local_hostname
        self.timeout = timeout

    def open(self, login: Login) -> smtplib.SMTP:
        where = f"{login.host}:{login.port}"
        try:
            conn = smtplib.SMTP(
                login.host, login.port, local_hostname=self.local_hostname, timeout=self.timeout
            )
        except (smtplib.SMTPException, OSError) as exc:
            raise SmtpFailure(f"cannot connect to SMTP server {where}: {_describe(exc)}") from exc
        try:
            if conn.sock is not None:  # pipelined commands must not wait for Nagle
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo()
            if not conn.has_extn("starttls"):
                raise SmtpFailure(f"SMTP server {where} does not offer STARTTLS")
            conn.starttls(context=self.tls.context())
            conn.ehlo()
            conn.login(login.username, login.password)
        except smtplib.SMTPAuthenticationError as exc:
            self.close(conn)
            raise SmtpFailure(f"SMTP login as {login.username} refused: {_reply(exc)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close(conn)
            raise SmtpFailure(f"cannot connect to SMTP server {where}: {_describe(exc)}") from exc
        except BaseException:
            self.close(conn)
            raise
        return conn

    def check(self, conn: smtplib.SMTP) -> bool:
        return bool(conn.noop()[0] == 250)

    def usable(self, conn: smtplib.SMTP) -> bool:
        return conn.sock is not None

    def close(self, conn: smtplib.SMTP) -> None:
        if conn.sock is None:
            return
        try:
            conn.sock.settimeout(CLOSE_TIMEOUT)
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()


class SmtpPool:
    """Warm submission connections per mailbox; see ``adbtd.adapters.pool`` for the rules."""

    def __init__(
        self,
        *,
        tls: ClientTls,
        local_hostname: str,
        limits: PoolLimits = DEFAULT_LIMITS,
        timeout: float = 30.0,
    ) -> None:
        connector = SmtpConnector(tls=tls, local_hostname=local_hostname, timeout=timeout)
        self.pool: KeyedPool[smtplib.SMTP] = KeyedPool(connector, limits, name="smtp")

    def submit(self, login: Login, envelope: Envelope) -> SubmitResult:
        """Submit one message; refused as a whole → ``SmtpFailure`` with the server's reply."""
        try:
            return self.pool.run(login, lambda conn: _submit(conn, envelope))
        except ConnectionDropped as exc:
            raise SmtpFailure(f"SMTP connection lost: {exc}") from exc
        except PoolBusy as exc:
            raise SmtpFailure(str(exc)) from exc

    def evict(self, mailbox_id: str) -> int:
        return self.pool.evict(mailbox_id)

    def close(self) -> None:
        self.pool.close()


def _submit(conn: smtplib.SMTP, envelope: Envelope) -> SubmitResult:
    """MAIL, RCPT... and DATA in one write when the server offers PIPELINING (RFC 2920), then
    the message; nothing irreversible happens before the message is sent."""
    try:
        code, reply, rejected = _envelope(conn, envelope)
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        conn.close()
        raise ConnectionDropped(_describe(exc)) from exc
    if code != 354:
        _reset(conn)  # recipients were accepted: end the transaction before pooling it again
        raise SmtpFailure(_format(code, reply))
    try:
        conn.send(_dot_stuffed(envelope.data))
        code, reply = conn.getreply()
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        conn.close()
        raise SmtpFailure(
            f"SMTP connection lost during DATA ({_describe(exc)}); the message may not have "
            "been queued"
        ) from exc
    if code != 250:
        raise SmtpFailure(_format(code, reply))
    accepted = [r for r in envelope.recipients if r not in rejected]
    return SubmitResult(accepted, rejected, _format(code, reply))


def _envelope(conn: smtplib.SMTP, envelope: Envelope) -> tuple[int, bytes, dict[str, str]]:
    """Send the envelope and DATA; returns DATA's reply and the refused recipients. A refusal
    of the sender or of every recipient raises ``SmtpFailure`` with the server's reply."""
    size = f" SIZE={len(envelope.data)}" if conn.has_extn("size") else ""
    commands = [f"MAIL FROM:{_path(envelope.sender)}{size}"]
    commands += [f"RCPT TO:{_path(rcpt)}" for rcpt in envelope.recipients]
    commands.append("DATA")
    if conn.has_extn("pipelining"):
        conn.send("".join(command + "\r\n" for command in commands))
        replies = [conn.getreply() for _ in commands]
    else:
        replies = []
        for command in commands:
            conn.putcmd(command)
            replies.append(conn.getreply())
            if replies[0][0] != 250:
                break
    mail_code, mail_reply = replies[0]
    rejected = {
        rcpt: _format(code, reply)
        for rcpt, (code, reply) in zip(envelope.recipients, replies[1:-1], strict=False)
        if code not in (250, 251)
    }
    data_code, data_reply = replies[-1] if len(replies) == len(commands) else (0, b"")
    if data_code == 354 and (mail_code != 250 or len(rejected) == len(envelope.recipients)):
        conn.send(b".\r\n")  # a server that opened DATA anyway gets an empty message ended
        conn.getreply()
    if mail_code != 250:
        _reset(conn)
        raise SmtpFailure(_format(mail_code, mail_reply))
    if len(rejected) == len(envelope.recipients):
        _reset(conn)
        first = next(iter(rejected.values()))
        more = f" (all {len(rejected)} recipients refused)" if len(rejected) > 1 else ""
        raise SmtpFailure(first + more)
    return data_code, data_reply, rejected


def _path(address: str) -> str:
    """``<address>`` for MAIL FROM / RCPT TO. Addresses arrive validated (the API's, or a
    mailbox's own), so smtplib's ``quoteaddr`` re-parse is not needed; nothing that could end
    the command line or the path is ever sent."""
    if not address.isascii() or any(ch in address for ch in "\r\n<> "):
        raise SmtpFailure(f"refusing to send to an unsafe address {address!r}")
    return f"<{address}>"


def _dot_stuffed(data: bytes) -> bytes:
    """The message in CRLF lines with leading dots doubled, ended by ``CRLF.CRLF``."""
    text = _LINE_BREAK.sub(b"\r\n", data)
    text = _LEADING_DOT.sub(b"..", text)
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    return text + b".\r\n"


def _reset(conn: smtplib.SMTP) -> None:
    try:
        conn.rset()
    except (smtplib.SMTPException, OSError):
        conn.close()


def _format(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {text}".strip()


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return _format(exc.smtp_code, exc.smtp_error)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc)
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
