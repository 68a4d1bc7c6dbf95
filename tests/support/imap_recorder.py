"""A TLS-terminating IMAP proxy that records every line a client sends, to count the commands
that reach the server. It presents the node's own certificate, so pinned clients accept it."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

_TAGGED = re.compile(rb"^([A-Za-z0-9]+) ([A-Za-z]+)(?: (.*))?$")


@dataclass
class ImapRecorder:
    listen_host: str
    upstream: tuple[str, int]
    cert: Path
    key: Path
    lines: list[bytes] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None
    _sockets: list[socket.socket] = field(default_factory=list)

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.listen_host, 0))
        server.listen(16)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def mark(self) -> int:
        with self._lock:
            return len(self.lines)

    def commands_since(self, mark: int) -> list[tuple[str, bytes]]:
        """(verb, arguments) of each tagged client line after ``mark``; UID X counts as X."""
        with self._lock:
            lines = self.lines[mark:]
        commands = []
        for line in lines:
            match = _TAGGED.match(line)
            assert match is not None, f"untagged client line {line!r}"
            verb, rest = match.group(2).decode().upper(), match.group(3) or b""
            if verb == "UID":
                sub, _, rest = rest.partition(b" ")
                verb = "UID " + sub.decode().upper()
            commands.append((verb, rest))
        return commands

    def _accept(self) -> None:
        assert self._server is not None
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(self.cert, self.key)
        client_tls = ssl.create_default_context()
        client_tls.check_hostname = False
        client_tls.verify_mode = ssl.CERT_NONE
        while True:
            try:
                raw, _ = self._server.accept()
            except OSError:
                return
            try:
                down = server_tls.wrap_socket(raw, server_side=True)
                up = client_tls.wrap_socket(socket.create_connection(self.upstream, timeout=10))
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            self._sockets += [down, up]
            threading.Thread(target=self._pump, args=(down, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, False), daemon=True).start()

    def _pump(self, src: ssl.SSLSocket, dst: ssl.SSLSocket, record: bool) -> None:
        pending = b""
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                if record:
                    pending += chunk
                    *complete, pending = pending.split(b"\r\n")
                    with self._lock:
                        self.lines.extend(complete)
                dst.sendall(chunk)
        except (OSError, ssl.SSLError):
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
