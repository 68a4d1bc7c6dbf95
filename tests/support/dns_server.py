"""A real authoritative DNS server for tests: dnslib wire format, UDP and TCP on 127.0.0.1.

Tests write records with ``add``; names listed in ``silent`` never get an answer (a resolver
sees a timeout). UDP answers over ``udp_limit`` bytes are truncated, so resolvers must retry
over TCP, as they do with large DKIM keys in the wild.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSLabel, DNSRecord

TXT_CHUNK = 255


def _rdata(rtype: str, value: str) -> Any:
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "CNAME":
        return CNAME(value)
    if rtype == "MX":
        preference, _, host = value.partition(" ")
        return MX(host, int(preference))
    if rtype == "TXT":
        raw = value.encode()
        return TXT([raw[i : i + TXT_CHUNK] for i in range(0, len(raw), TXT_CHUNK)] or [b""])
    raise ValueError(f"unsupported record type {rtype}")


class DnsTestServer:
    """Records keyed by (name, type); ``address`` is what ``ADBTD_DNS_RESOLVERS`` takes."""

    def __init__(self, *, udp_limit: int = 512) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.silent: set[str] = set()
        self.udp_limit = udp_limit
        self.queries: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._udp: socketserver.ThreadingUDPServer | None = None
        self._tcp: socketserver.ThreadingTCPServer | None = None

    @property
    def port(self) -> int:
        assert self._udp is not None
        return int(self._udp.server_address[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, name: str, rtype: str, *values: str) -> None:
        key = (name.rstrip(".").lower(), rtype.upper())
        with self._lock:
            self.records.setdefault(key, []).extend(values)

    def replace(self, name: str, rtype: str, *values: str) -> None:
        with self._lock:
            self.records.pop((name.rstrip(".").lower(), rtype.upper()), None)
        self.add(name, rtype, *values)

    def remove(self, name: str, rtype: str) -> None:
        with self._lock:
            self.records.pop((name.rstrip(".").lower(), rtype.upper()), None)

    def answer(self, query: bytes, transport: str) -> bytes | None:
        """The reply to one query, or None to stay silent."""
        request = DNSRecord.parse(query)
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append((qname, qtype, transport))
        if qname in self.silent:
            return None
        reply = request.reply(ra=0, aa=1)
        with self._lock:
            values = list(self.records.get((qname, qtype), []))
            exists = any(name == qname for name, _ in self.records)
        if not exists:
            reply.header.rcode = RCODE.NXDOMAIN
        for value in values:
            rdata = _rdata(qtype, value)
            reply.add_answer(RR(DNSLabel(qname), QTYPE.reverse[qtype], rdata=rdata, ttl=60))
        packed: bytes = reply.pack()
        if transport == "udp" and len(packed) > self.udp_limit:
            truncated = request.reply(ra=0, aa=1)
            truncated.header.tc = 1
            packed = truncated.pack()
        return packed

    def start(self) -> None:
        server = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = server.answer(data, "udp")
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                head = self.request.recv(2)
                if len(head) < 2:
                    return
                (length,) = struct.unpack("!H", head)
                data = b""
                while len(data) < length:
                    chunk = self.request.recv(length - len(data))
                    if not chunk:
                        return
                    data += chunk
                reply = server.answer(data, "tcp")
                if reply is not None:
                    self.request.sendall(struct.pack("!H", len(reply)) + reply)

        self._udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
        self._udp.daemon_threads = True
        port = self.port
        try:
            self._tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
        except OSError:
            self._udp.server_close()
            self._udp = None
            raise
        self._tcp.daemon_threads = True
        for srv in (self._udp, self._tcp):
            threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        for srv in (self._udp, self._tcp):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        self._udp = self._tcp = None


@contextmanager
def running_dns_server(**kwargs: Any) -> Iterator[DnsTestServer]:
    """Start a server for the block; retried if the UDP port is taken over TCP."""
    for _ in range(5):
        server = DnsTestServer(**kwargs)
        try:
            server.start()
        except OSError:
            continue
        try:
            yield server
        finally:
            server.stop()
        return
    raise RuntimeError("could not start the test DNS server")


@contextmanager
def silent_udp_port() -> Iterator[str]:
    """A UDP port that receives queries and never answers: a resolver that times out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
