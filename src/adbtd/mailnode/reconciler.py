"""Keep a node's files equal to the desired state: periodically, and at once when notified.

A failed round (database down, bad value, postmap error) leaves the previous files in force,
is logged and retried, so mail keeps flowing from what is on disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from adbtd.mailnode.apply import ChangeSet, Daemon, apply_files
from adbtd.mailnode.layout import NodeLayout
from adbtd.mailnode.maildirs import hosted_mail_dirs, remove_orphan_mail
from adbtd.mailnode.netcheck import wait_listening
from adbtd.mailnode.render import listen_ips, render_node
from adbtd.mailnode.state import NodeConfig, NodeState

logger = logging.getLogger("adbtd.mailnode")

RETRY_SECONDS = 5.0
LISTEN_TIMEOUT = 5.0

Reloader = Callable[[Iterable[Daemon]], set[Daemon]]  # returns the daemons it reloaded
Evictor = Callable[[Iterable[str]], None]  # ends the sessions of these (removed) mailboxes


class Reconciler:
    """Render + apply + reload, from ``state_provider``; ``notify()`` triggers a round now."""

    def __init__(
        self,
        state_provider: Callable[[], NodeState],
        config: NodeConfig,
        *,
        reloader: Reloader | None = None,
        evictor: Evictor | None = None,
    ) -> None:
        self.state_provider = state_provider
        self.config = config
        self.reloader = reloader
        self.evictor = evictor
        self.last_error: BaseException | None = None
        self.last_state: NodeState | None = None
        # Daemons whose files changed but whose reload has not succeeded yet: the files are
        # already on disk, so a later round would see nothing to change and never reload them.
        self.pending_reload: set[Daemon] = set()
        self._round_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def reconcile_once(self) -> ChangeSet:
        """One round; raises on failure (the previous files stay in place, no mail is removed).

        Mail of removed mailboxes goes last: only once the new passwd-files are in force (the
        reload returned), so a removed mailbox cannot log in and re-create its Maildir."""
        with self._round_lock:
            state = self.state_provider()
            changes = apply_files(self.config.base_dir, render_node(state, self.config))
            reloaded: set[Daemon] = set()
            self.pending_reload |= changes.reload
            if self.pending_reload and self.reloader is not None:
                reloaded = self.reloader(self.pending_reload)
            # Reloaded, or not running (a daemon that starts later reads the new files).
            self.pending_reload.clear()
            if reloaded & {Daemon.POSTFIX, Daemon.DOVECOT}:
                self.wait_listeners(state)
            if self.evictor is not None and self.last_state is not None:
                gone = _emails(self.last_state) - _emails(state)
                if gone:
                    self.evictor(gone)
            mail_root = NodeLayout(self.config.base_dir).mail_root
            removed = remove_orphan_mail(mail_root, hosted_mail_dirs(state))
            changes = replace(changes, removed_mail=tuple(removed))
            self.last_state = state
            if changes.changed:
                logger.info(
                    "mail node reconciled: %d written, %d deleted, reloaded %s, "
                    "mail removed for %s",
                    len(changes.written),
                    len(changes.deleted),
                    ", ".join(sorted(changes.reload)) or "nothing",
                    ", ".join(removed) or "no mailbox",
                )
            return changes

    def notify(self) -> None:
        """Called by the control plane after a committed change; a round follows within ms."""
        self._wake.set()

    def start(self, interval: float) -> None:
        """Reconcile every ``interval`` seconds and whenever ``notify()`` is called."""
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="mailnode-reconciler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None

    def _run(self, interval: float) -> None:
        wait = interval
        while not self._stopping.is_set():
            self._wake.wait(timeout=wait)
            self._wake.clear()
            if self._stopping.is_set():
                return
            wait = interval if self._round() else min(interval, RETRY_SECONDS)

    def _round(self) -> bool:
        started = time.monotonic()
        try:
            self.reconcile_once()
        except Exception as exc:
            self.last_error = exc
            logger.exception("mail node reconcile failed; previous files stay in force")
            return False
        self.last_error = None
        logger.debug("reconcile round took %.3f s", time.monotonic() - started)
        return True

    def wait_listeners(self, state: NodeState) -> None:
        """Block (bounded) until every listener of ``state`` accepts connections."""
        if not wait_listening(self._listeners(state), LISTEN_TIMEOUT):
            logger.warning("some listeners are not up %.0f s after reload", LISTEN_TIMEOUT)

    def _listeners(self, state: NodeState) -> list[tuple[str, int]]:
        ports = (self.config.smtp_port, self.config.submission_port, self.config.imap_port)
        return [(ip, port) for ip in listen_ips(state, self.config) for port in ports]


def _emails(state: NodeState) -> set[str]:
    return {mailbox.email.lower() for mailbox in state.mailboxes}
