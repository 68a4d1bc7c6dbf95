"""The mail node as the control plane runs it: state from the database, woken by revisions.

In-process changes call ``Runtime.node_changed`` (wakes the reconciler at once); changes made by
other processes (the CLI, an API on another host) are seen by polling the node revision.
"""

from __future__ import annotations

import logging
import threading

from adbtd.mailnode.node import MailNode, build_node_config
from adbtd.mailnode.state import NodeState
from adbtd.runtime import Runtime
from adbtd.services.node_state import load_node_state
from adbtd.services.node_sync import current_revision

log = logging.getLogger("adbtd.mailnode")

REVISION_POLL_SECONDS = 0.5


class DatabaseMailNode:
    """A ``MailNode`` fed from the shared database; ``start``/``stop`` for ``serve``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.node = MailNode(self.load_state, build_node_config(runtime.settings))
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        self._seen_revision = -1

    def load_state(self) -> NodeState:
        with self.runtime.db.transaction() as session:
            self._seen_revision = current_revision(session)
            settings = self.runtime.settings
            return load_node_state(
                session,
                node=settings.node_name,
                secret_key=settings.secret_key,
                helo_per_domain=not settings.mx_hostname_for(settings.node_name),
            )

    def start(self) -> None:
        self.node.start(interval=self.runtime.settings.reconcile_interval_seconds)
        self.runtime.node_changed = self.node.notify
        self._stopping.clear()
        self._poller = threading.Thread(target=self._poll, name="mailnode-revision", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self.node.stop()

    def _poll(self) -> None:
        while not self._stopping.wait(REVISION_POLL_SECONDS):
            try:
                with self.runtime.db.transaction() as session:
                    revision = current_revision(session)
            except Exception:
                log.exception("cannot read the node revision; will retry")
                continue
            if revision != self._seen_revision:
                self.node.notify()
