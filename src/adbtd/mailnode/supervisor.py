"""Run Postfix, Dovecot and OpenDKIM as project-local child processes and keep them alive.

Each daemon runs in the foreground under a background monitor thread: one that dies is logged
and restarted with a backoff. Reloads go only to the daemon whose files changed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from adbtd.mailnode.apply import Daemon
from adbtd.mailnode.daemons import (
    DaemonError,
    DaemonSpec,
    daemon_specs,
    kick_dovecot_users,
    log_excerpt,
    stop_postfix,
)
from adbtd.mailnode.layout import NodeLayout
from adbtd.mailnode.state import NodeConfig

logger = logging.getLogger("adbtd.mailnode")

START_TIMEOUT = 15.0
MONITOR_INTERVAL = 0.25
MAX_BACKOFF = 30.0


@dataclass
class _Child:
    spec: DaemonSpec
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_attempt: float = 0.0
    backoff: float = field(default=1.0)


class Supervisor:
    """Starts the three daemons, restarts any that dies, reloads and stops them on request."""

    def __init__(self, config: NodeConfig) -> None:
        self.layout = NodeLayout(config.base_dir.resolve())
        self._children = {spec.name: _Child(spec) for spec in daemon_specs(self.layout)}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start every daemon (bounded waits) and the monitor; on failure nothing stays up."""
        prepare_directories(self.layout)
        self._stopping.clear()
        try:
            for child in self._children.values():
                self._spawn(child)
        except DaemonError:
            self.stop()
            raise
        self._thread = threading.Thread(
            target=self._monitor, name="mailnode-supervisor", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop all daemons together (OpenDKIM and Dovecot each take seconds to exit)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        with self._lock:
            children = [c for c in self._children.values() if c.proc is not None]
            for child in children:
                self._signal_stop(child)
            for child in children:
                self._reap(child)

    def reload(self, daemons: Iterable[Daemon]) -> set[Daemon]:
        """Reload only the named daemons; one not running picks the files up when it starts."""
        reloaded: set[Daemon] = set()
        with self._lock:
            for name in sorted(set(daemons)):
                child = self._children[name]
                if child.proc is not None and child.proc.poll() is None:
                    child.spec.reload()
                    reloaded.add(name)
                    logger.info("reloaded %s", name)
        return reloaded

    def kick(self, users: Iterable[str]) -> None:
        """End the IMAP sessions of removed mailboxes (a reload keeps logged-in sessions)."""
        wanted = {user.lower() for user in users}
        with self._lock:
            child = self._children[Daemon.DOVECOT]
            if wanted and child.proc is not None and child.proc.poll() is None:
                kicked = kick_dovecot_users(self.layout, wanted)
                if kicked:
                    logger.info("ended the sessions of removed mailboxes %s", ", ".join(kicked))

    def pid(self, name: Daemon) -> int | None:
        """The foreground process of a daemon, for operators and tests."""
        proc = self._children[name].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def restarts(self, name: Daemon) -> int:
        return self._children[name].restarts

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        _clear_stale(spec, self.layout)
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_file.open("ab") as out:
            child.proc = subprocess.Popen(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not spec.ready():
            code = child.proc.poll()
            if code is not None or time.monotonic() > deadline:
                self._abandon(child)
                why = f"exited with {code}" if code is not None else "did not become ready"
                raise DaemonError(
                    f"{spec.name} {why} within {START_TIMEOUT:.0f} s; "
                    f"log {spec.log_file}:\n{log_excerpt(spec.log_file)}"
                )
            time.sleep(0.02)
        logger.info("%s started (pid %d)", spec.name, child.proc.pid)

    def _monitor(self) -> None:
        while not self._stopping.wait(MONITOR_INTERVAL):
            with self._lock:
                for child in self._children.values():
                    if self._stopping.is_set():
                        return
                    self._check(child)

    def _check(self, child: _Child) -> None:
        proc = child.proc
        if proc is not None and proc.poll() is None:
            return
        now = time.monotonic()
        if proc is not None:
            logger.warning(
                "%s exited with %s; restarting. Log:\n%s",
                child.spec.name,
                proc.returncode,
                log_excerpt(child.spec.log_file, 800),
            )
            child.proc = None
            child.next_attempt = now
        if now < child.next_attempt:
            return
        try:
            self._spawn(child)
            child.restarts += 1
            child.backoff = 1.0
        except DaemonError:
            logger.exception(
                "restarting %s failed; retrying in %.0f s", child.spec.name, child.backoff
            )
            child.next_attempt = now + child.backoff
            child.backoff = min(child.backoff * 2, MAX_BACKOFF)

    def _signal_stop(self, child: _Child) -> None:
        proc = child.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if child.spec.name is Daemon.POSTFIX:
                stop_postfix(self.layout)
            else:
                proc.terminate()
        except DaemonError:
            logger.exception("stopping %s failed; killing it", child.spec.name)
            self._kill(child, proc)

    def _reap(self, child: _Child) -> None:
        proc = child.proc
        if proc is None:
            return
        try:
            proc.wait(timeout=child.spec.stop_timeout)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s did not stop in %.0f s; killing it", child.spec.name, child.spec.stop_timeout
            )
            self._kill(child, proc)
            proc.wait(timeout=5.0)
        child.proc = None

    def _abandon(self, child: _Child) -> None:
        if child.proc is not None:
            self._kill(child, child.proc)
            try:
                child.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                logger.error("%s (pid %d) would not die", child.spec.name, child.proc.pid)
            child.proc = None

    def _kill(self, child: _Child, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process group, and Postfix's master, which may have left the group."""
        _kill_group(proc)
        if child.spec.name is Daemon.POSTFIX:
            pidfile = self.layout.postfix_queue / "pid" / "master.pid"
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)


def prepare_directories(layout: NodeLayout) -> None:
    """Directories the daemons need but do not create; Postfix's data_directory is left to
    Postfix (a root-owned one breaks its master.lock)."""
    _make_dir(layout.log_dir, 0o755, None, None)
    _make_dir(layout.postfix_queue, 0o755, None, None)
    _make_dir(layout.dovecot_state, 0o750, None, None)
    _make_dir(layout.opendkim_run, 0o750, "opendkim", "postfix")
    _make_dir(layout.mail_root, 0o700, "vmail", "vmail")


def _make_dir(path: Path, mode: int, user: str | None, group: str | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and user and group:
        shutil.chown(path, user, group)
    os.chmod(path, mode)


def _clear_stale(spec: DaemonSpec, layout: NodeLayout) -> None:
    """A socket left by a killed daemon must not pass for readiness of the new one."""
    if spec.name is Daemon.OPENDKIM:
        layout.opendkim_socket.unlink(missing_ok=True)
    elif spec.name is Daemon.DOVECOT:
        layout.auth_socket.unlink(missing_ok=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
