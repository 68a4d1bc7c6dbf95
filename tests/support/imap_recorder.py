"""A TLS-terminating IMAP proxy that records every line a client sends, to count the commands
that reach the server. It presents the node's own certificate, so pinned clients accept it.
A line is recorded before it is passed on, so once the server has answered, it is counted.

It runs on its own asyncio loop in one thread: an ``ssl.SSLSocket`` must not be read in one
thread while another writes it (OpenSSL objects are not thread-safe; with TLS 1.3 tickets in
flight the two directions of a two-thread pump broke connections at random)."""

from __future__ import annotations

import asyncio
import contextlib
import re
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
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

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

    async def _listen(self) -> asyncio.Server:
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(self.cert, self.key)
        return await asyncio.start_server(self._proxy, self.listen_host, 0, ssl=server_tls)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _proxy(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        client_tls = ssl.create_default_context()
        client_tls.check_hostname = False
        client_tls.verify_mode = ssl.CERT_NONE
        try:
            up_r, up_w = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream, ssl=client_tls), 10
            )
        except (OSError, TimeoutError):
            down_w.close()
            return
        self._writers |= {down_w, up_w}
        await asyncio.gather(self._pump(down_r, up_w, record=True), self._pump(up_r, down_w))

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, record: bool = False
    ) -> None:
        pending = b""
        try:
            while chunk := await src.read(65536):
                if record:
                    pending += chunk
                    *complete, pending = pending.split(b"\r\n")
                    with self._lock:
                        self.lines.extend(complete)
                dst.write(chunk)
                await dst.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)
