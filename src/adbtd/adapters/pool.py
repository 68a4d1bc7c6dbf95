"""A bounded pool of warm, authenticated connections keyed by mailbox (used for SMTP and IMAP).

Rules, in one place so both protocols share them:

- the key is (mailbox id, host, port, username, password fingerprint): one mailbox's connection
  never serves another, and a changed password never reuses a connection made with the old one;
- at most ``max_per_key`` connections per key and ``max_total`` in all; when the total is
  reached an idle connection of another mailbox is closed to make room, otherwise the caller
  waits up to ``acquire_timeout``;
- an idle connection older than ``idle_timeout`` is closed (on use and by a janitor thread);
- before reuse a connection idle for ``check_after`` seconds or more gets a health check (NOOP);
  one used less than ``check_after`` ago was alive a moment ago, and if it died since, the retry
  below catches it (the adapters default to 1 s: a NOOP costs a round trip on every request);
- ``run`` retries an operation once on a fresh connection when a reused one turns out dropped
  (the operation raises ``ConnectionDropped``, which it may only do while a retry is safe);
- ``evict(mailbox_id)`` closes the mailbox's idle connections and retires the busy ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

log = logging.getLogger("adbtd.adapters.pool")

C = TypeVar("C")
T = TypeVar("T")


class ConnectionDropped(Exception):
    """The server or network dropped a connection before anything irreversible happened."""


class PoolBusy(Exception):
    """No connection became free within the acquire timeout."""


@dataclass(frozen=True, slots=True)
class Login:
    """Where and as whom to connect; the password never appears in a repr."""

    mailbox_id: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)


class Connector(Protocol[C]):
    """How one protocol opens, checks and closes its connections."""

    def open(self, login: Login) -> C: ...

    def check(self, conn: C) -> bool: ...

    def usable(self, conn: C) -> bool: ...

    def close(self, conn: C) -> None: ...


@dataclass(frozen=True, slots=True)
class PoolLimits:
    max_per_key: int = 4
    max_total: int = 64
    idle_timeout: float = 60.0
    check_after: float = 0.0
    acquire_timeout: float = 30.0


PoolKey = tuple[str, str, int, str, bytes]


@dataclass(slots=True)
class _Idle(Generic[C]):
    conn: C
    since: float


@dataclass(frozen=True, slots=True)
class Lease(Generic[C]):
    conn: C
    key: PoolKey
    generation: int
    fresh: bool


class KeyedPool(Generic[C]):
    """Thread-safe; one connection is used by one thread at a time."""

    def __init__(self, connector: Connector[C], limits: PoolLimits, *, name: str) -> None:
        self.connector = connector
        self.limits = limits
        self.name = name
        self._salt = os.urandom(16)
        self._cond = threading.Condition()
        self._idle: dict[PoolKey, deque[_Idle[C]]] = {}
        self._open: dict[PoolKey, int] = {}
        self._total = 0
        self._generation: dict[str, int] = {}
        self._closed = False
        self._janitor: threading.Thread | None = None
        self._stop = threading.Event()

    def key(self, login: Login) -> PoolKey:
        digest = hmac.new(self._salt, login.password.encode(), hashlib.sha256).digest()[:16]
        return (login.mailbox_id, login.host, login.port, login.username, digest)

    def run(self, login: Login, operation: Callable[[C], T]) -> T:
        """Run ``operation`` on a pooled connection, once more on a fresh one if it dropped."""
        lease = self.acquire(login)
        try:
            return self._use(lease, operation)
        except ConnectionDropped:
            if lease.fresh:
                raise
        log.info(
            "%s connection of %s dropped; retrying on a fresh one", self.name, login.mailbox_id
        )
        return self._use(self.acquire(login, fresh=True), operation)

    def _use(self, lease: Lease[C], operation: Callable[[C], T]) -> T:
        try:
            result = operation(lease.conn)
        except ConnectionDropped:
            self.release(lease, keep=False)
            raise
        except BaseException:
            self.release(lease, keep=True)
            raise
        self.release(lease, keep=True)
        return result

    def acquire(self, login: Login, *, fresh: bool = False) -> Lease[C]:
        """A healthy connection for ``login``: a warm one unless ``fresh``, else a new one."""
        key = self.key(login)
        self._start_janitor()
        deadline = time.monotonic() + self.limits.acquire_timeout
        while True:
            idle, generation, to_close = self._reserve(key, deadline, fresh)
            self._close_all(to_close)
            if idle is None:
                return Lease(self._open_reserved(key, login), key, generation, fresh=True)
            if time.monotonic() - idle.since < self.limits.check_after or self._check(idle.conn):
                return Lease(idle.conn, key, generation, fresh=False)
            self._forget(key)
            self._close_all([idle.conn])

    def release(self, lease: Lease[C], *, keep: bool) -> None:
        """Give a connection back (``keep``) or close it; an evicted mailbox's is closed."""
        mailbox_id = lease.key[0]
        with self._cond:
            keep = (
                keep
                and not self._closed
                and self._generation.get(mailbox_id, 0) == lease.generation
                and self._usable(lease.conn)
            )
            if keep:
                self._idle.setdefault(lease.key, deque()).append(
                    _Idle(lease.conn, time.monotonic())
                )
            else:
                self._forget_locked(lease.key)
            self._cond.notify_all()
        if not keep:
            self._close_all([lease.conn])

    def evict(self, mailbox_id: str) -> int:
        """Close every idle connection of the mailbox; busy ones close when given back."""
        with self._cond:
            self._generation[mailbox_id] = self._generation.get(mailbox_id, 0) + 1
            victims: list[C] = []
            for key in [k for k in self._idle if k[0] == mailbox_id]:
                for entry in self._idle.pop(key):
                    victims.append(entry.conn)
                    self._forget_locked(key)
            self._cond.notify_all()
        self._close_all(victims)
        return len(victims)

    def sweep(self) -> int:
        """Close connections idle longer than ``idle_timeout``."""
        with self._cond:
            victims = self._expired_locked(time.monotonic())
            self._cond.notify_all()
        self._close_all(victims)
        return len(victims)

    def close(self) -> None:
        """Close everything idle; busy connections are closed when given back."""
        self._stop.set()
        with self._cond:
            self._closed = True
            victims = [e.conn for q in self._idle.values() for e in q]
            for key, queue in list(self._idle.items()):
                for _ in queue:
                    self._forget_locked(key)
            self._idle.clear()
            self._cond.notify_all()
        self._close_all(victims)
        if self._janitor is not None and self._janitor is not threading.current_thread():
            self._janitor.join(timeout=5.0)

    def stats(self) -> dict[str, int]:
        with self._cond:
            idle = sum(len(q) for q in self._idle.values())
            return {"open": self._total, "idle": idle, "busy": self._total - idle}

    def open_count(self, mailbox_id: str) -> int:
        with self._cond:
            return sum(n for k, n in self._open.items() if k[0] == mailbox_id)

    def _reserve(
        self, key: PoolKey, deadline: float, fresh: bool
    ) -> tuple[_Idle[C] | None, int, list[C]]:
        """Take an idle connection, or reserve a slot for a new one (waiting if at a cap);
        also the mailbox's eviction generation at that moment."""
        with self._cond:
            while True:
                if self._closed:
                    raise PoolBusy(f"{self.name} pool is closed")
                generation = self._generation.get(key[0], 0)
                to_close = self._expired_locked(time.monotonic())
                queue = self._idle.get(key)
                if queue and not fresh:
                    return queue.pop(), generation, to_close
                per_key = self._open.get(key, 0)
                if per_key >= self.limits.max_per_key and queue:
                    to_close.append(queue.popleft().conn)
                    self._forget_locked(key)
                    per_key -= 1
                if per_key < self.limits.max_per_key:
                    if self._total >= self.limits.max_total:
                        victim = self._oldest_idle_locked()
                        if victim is not None:
                            to_close.append(victim)
                    if self._total < self.limits.max_total:
                        self._open[key] = per_key + 1
                        self._total += 1
                        return None, generation, to_close
                if to_close:  # close outside the lock, then look again
                    self._cond.release()
                    try:
                        self._close_all(to_close)
                    finally:
                        self._cond.acquire()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolBusy(
                        f"no {self.name} connection free within {self.limits.acquire_timeout:.0f} s"
                    )
                self._cond.wait(remaining)

    def _open_reserved(self, key: PoolKey, login: Login) -> C:
        try:
            return self.connector.open(login)
        except BaseException:
            self._forget(key)
            raise

    def _oldest_idle_locked(self) -> C | None:
        oldest: tuple[float, PoolKey] | None = None
        for key, queue in self._idle.items():
            if queue and (oldest is None or queue[0].since < oldest[0]):
                oldest = (queue[0].since, key)
        if oldest is None:
            return None
        queue = self._idle[oldest[1]]
        conn = queue.popleft().conn
        self._forget_locked(oldest[1])
        return conn

    def _expired_locked(self, now: float) -> list[C]:
        victims: list[C] = []
        for key, queue in list(self._idle.items()):
            while queue and now - queue[0].since >= self.limits.idle_timeout:
                victims.append(queue.popleft().conn)
                self._forget_locked(key)
        return victims

    def _forget(self, key: PoolKey) -> None:
        with self._cond:
            self._forget_locked(key)
            self._cond.notify_all()

    def _forget_locked(self, key: PoolKey) -> None:
        """One connection of ``key`` is gone (closed or never opened)."""
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)
        if not self._idle.get(key, True):
            del self._idle[key]
        self._total -= 1

    def _usable(self, conn: C) -> bool:
        try:
            return self.connector.usable(conn)
        except Exception:
            return False

    def _check(self, conn: C) -> bool:
        try:
            return self.connector.check(conn)
        except Exception:
            return False

    def _close_all(self, conns: list[C]) -> None:
        for conn in conns:
            with contextlib.suppress(Exception):  # a dead connection may fail to close
                self.connector.close(conn)

    def _start_janitor(self) -> None:
        if self._janitor is not None:
            return
        with self._cond:
            if self._janitor is None and not self._closed:
                self._janitor = threading.Thread(
                    target=self._sweep_forever, name=f"{self.name}-pool-janitor", daemon=True
                )
                self._janitor.start()

    def _sweep_forever(self) -> None:
        interval = max(0.5, min(30.0, self.limits.idle_timeout / 4))
        while not self._stop.wait(interval):
            try:
                self.sweep()
            except Exception:
                log.exception("%s pool sweep failed", self.name)


TlsMode = Literal["pinned", "system", "none"]


class ClientTls:
    """How the API verifies its own mail servers: ``pinned`` trusts exactly the node's
    certificate file (no hostname check: servers are reached by IP), ``system`` uses the
    system CAs with hostname checks, ``none`` verifies nothing (tests only)."""

    def __init__(self, mode: TlsMode = "system", cafile: Path | None = None) -> None:
        if mode == "pinned" and cafile is None:
            raise ValueError("pinned TLS needs the certificate file")
        self.mode = mode
        self.cafile = cafile
        self._cached: tuple[float, ssl.SSLContext] | None = None
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        """The SSL context, rebuilt when the pinned certificate file changes."""
        stamp = self.cafile.stat().st_mtime if self.mode == "pinned" and self.cafile else 0.0
        with self._lock:
            if self._cached is None or self._cached[0] != stamp:
                self._cached = (stamp, self._build())
            return self._cached[1]

    def _build(self) -> ssl.SSLContext:
        if self.mode == "system":
            return ssl.create_default_context()
        context = ssl.create_default_context(
            cafile=str(self.cafile) if self.mode == "pinned" else None
        )
        context.check_hostname = False
        if self.mode == "none":
            context.verify_mode = ssl.CERT_NONE
        else:
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return context
