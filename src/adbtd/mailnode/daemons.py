"""How each daemon of a node is started, checked, reloaded and stopped (commands and paths).

The supervisor owns the processes; this module only knows the three daemons' habits, so each
quirk from MAILNODE-FACTS lives next to the daemon it belongs to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adbtd.mailnode.apply import Daemon
from adbtd.mailnode.layout import NodeLayout

COMMAND_TIMEOUT = 15.0
LOG_EXCERPT_BYTES = 3000


class DaemonError(RuntimeError):
    """A daemon failed to start, reload or stop; the message carries an excerpt of its log."""


@dataclass(frozen=True, slots=True)
class DaemonSpec:
    """One daemon: its foreground command, log, readiness test and reload action."""

    name: Daemon
    argv: tuple[str, ...]
    log_file: Path
    ready: Callable[[], bool]
    reload: Callable[[], None]
    stop_timeout: float


def daemon_specs(layout: NodeLayout) -> list[DaemonSpec]:
    """The three daemons in start order: the milter and LMTP/auth before Postfix needs them."""
    postfix_dir = str(layout.postfix_config)
    return [
        DaemonSpec(
            Daemon.OPENDKIM,
            ("opendkim", "-f", "-x", str(layout.opendkim_config)),
            layout.opendkim_log,
            layout.opendkim_socket.exists,
            lambda: _signal_pidfile(layout.opendkim_pid, signal.SIGUSR1),
            2.0,  # stateless, yet slow to exit on TERM (up to 5 s): killed after 2 s
        ),
        DaemonSpec(
            Daemon.DOVECOT,
            ("dovecot", "-F", "-c", str(layout.dovecot_config)),
            layout.dovecot_log,
            layout.auth_socket.exists,
            lambda: _reload_logged(
                ("doveadm", "-c", str(layout.dovecot_config), "reload"),
                layout.dovecot_log,
                "reloading configuration",
            ),
            10.0,
        ),
        DaemonSpec(
            Daemon.POSTFIX,
            ("postfix", "-c", postfix_dir, "start-fg"),
            layout.postfix_log,
            lambda: _pidfile_alive(layout.postfix_queue / "pid" / "master.pid"),
            lambda: _reload_logged(
                ("postfix", "-c", postfix_dir, "reload"), layout.postfix_log, "reload --"
            ),
            10.0,
        ),
    ]


def stop_postfix(layout: NodeLayout) -> None:
    """``postfix stop`` makes master end its children; a TERM to the wrapper shell would not."""
    run_command(("postfix", "-c", str(layout.postfix_config), "stop"))


def kick_dovecot_users(layout: NodeLayout, users: set[str]) -> list[str]:
    """Disconnect every session of ``users``: one ``doveadm who``, then one ``doveadm kick``
    per user that is logged in (kick takes one mask). Returns the users kicked."""
    config = str(layout.dovecot_config)
    listing = run_command(("doveadm", "-c", config, "who", "-1"))
    online = {line.split()[0].lower() for line in listing.splitlines()[1:] if line.strip()}
    kicked = sorted(online & users)
    for user in kicked:
        run_command(("doveadm", "-c", config, "kick", user))
    return kicked


def run_command(argv: tuple[str, ...]) -> str:
    """Run a daemon's control command with a bounded wait; its output on failure."""
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DaemonError(f"{' '.join(argv)}: {exc}") from exc
    if result.returncode != 0:
        raise DaemonError(f"{' '.join(argv)} failed: {(result.stderr or result.stdout)[-2000:]}")
    return result.stdout


def log_excerpt(path: Path, limit: int = LOG_EXCERPT_BYTES) -> str:
    """The end of a daemon's log, for error messages."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - limit))
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"(no log at {path})"


def _reload_logged(argv: tuple[str, ...], log: Path, needle: str, timeout: float = 5.0) -> None:
    """Reload and wait until the daemon logs that it did, so the next client sees new config."""
    offset = log.stat().st_size if log.exists() else 0
    run_command(argv)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _log_contains(log, offset, needle):
            return
        time.sleep(0.01)
    raise DaemonError(f"{argv[0]} did not confirm the reload:\n{log_excerpt(log)}")


def _log_contains(log: Path, offset: int, needle: str) -> bool:
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            return needle.encode() in handle.read()
    except FileNotFoundError:
        return False


def _signal_pidfile(pidfile: Path, signum: signal.Signals) -> None:
    try:
        os.kill(int(pidfile.read_text().split()[0]), signum)
    except (OSError, ValueError, IndexError) as exc:
        raise DaemonError(f"cannot signal the process in {pidfile}: {exc}") from exc


def _pidfile_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().split()[0]), 0)
    except (OSError, ValueError, IndexError):
        return False
    return True
