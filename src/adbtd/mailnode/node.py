"""A whole mail node: the supervised daemons plus the reconciler that feeds them files.

``adbtd serve`` (embedded) and ``adbtd mailnode run`` (own host) build one with
``build_node_config(settings)`` and a state provider reading the shared database.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from adbtd.mailnode.apply import ChangeSet
from adbtd.mailnode.reconciler import Reconciler
from adbtd.mailnode.state import NodeConfig, NodeState
from adbtd.mailnode.supervisor import Supervisor
from adbtd.mailnode.tls import ensure_tls
from adbtd.settings import Settings

logger = logging.getLogger("adbtd.mailnode")


def build_node_config(
    settings: Settings,
    *,
    listen_ips: tuple[str, ...] = (),
    ip_hostnames: Mapping[str, str] | None = None,
) -> NodeConfig:
    """The node's operator-side config from settings: files under ``data_dir/mailnode``;
    ``ip_hostnames`` names each IP in HELO (its PTR name), others use ``mail_hostname``."""
    base_dir = node_dir(settings)
    safe = keys_path_is_safe(base_dir)
    if not safe:
        logger.warning(
            "%s is under a world-writable directory; OpenDKIM's RequireSafeKeys "
            "is turned off. Use a private data directory in production.",
            base_dir,
        )
    return NodeConfig(
        base_dir=base_dir,
        hostname=settings.mail_hostname,
        submission_port=settings.submission_port,
        imap_port=settings.imap_port,
        smtp_port=settings.smtp_port,
        outbound_relay=settings.outbound_relay,
        tls_cert_file=settings.tls_cert_file,
        tls_key_file=settings.tls_key_file,
        listen_ips=listen_ips,
        require_safe_keys=safe,
        ip_hostnames=dict(ip_hostnames or {}),
    )


FALLBACK_ROOT = Path("/var/lib/adbtd")


def node_dir(settings: Settings) -> Path:
    """Where the node's files live: ``ADBTD_MAILNODE_DIR``, else ``data_dir/mailnode`` when the
    daemons' own users can reach it, else a directory under /var/lib/adbtd named for the data
    directory (a checkout under /root, mode 0700, is the common case on a fresh machine)."""
    if settings.mailnode_dir is not None:
        return settings.mailnode_dir.resolve()
    wanted = (settings.data_dir / "mailnode").resolve()
    if traversable_by_others(wanted):
        return wanted
    tag = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:12]
    fallback = FALLBACK_ROOT / f"mailnode-{tag}"
    logger.info(
        "%s is not reachable by the mail daemons' users; the node lives in %s", wanted, fallback
    )
    return fallback


def traversable_by_others(path: Path) -> bool:
    """Whether every existing ancestor lets other users pass through (``o+x``)."""
    for parent in path.parents:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            continue
        if not mode & stat.S_IXOTH:
            return False
    return True


def keys_path_is_safe(path: Path) -> bool:
    """OpenDKIM refuses keys below any directory that others can write (e.g. /tmp)."""
    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & (stat.S_IWOTH | stat.S_IWGRP):
            return False
    return True


class MailNode:
    """Start: files first, then the daemons, then the reconcile loop. Stop: the reverse."""

    def __init__(self, state_provider: Callable[[], NodeState], config: NodeConfig) -> None:
        self.config = config
        self.supervisor = Supervisor(config)
        self.reconciler = Reconciler(
            state_provider, config, reloader=self.supervisor.reload, evictor=self.supervisor.kick
        )

    def start(self, interval: float = 30.0) -> None:
        """Bring the node up; daemons start from the last good files if the state is unreadable."""
        os.makedirs(self.config.base_dir, exist_ok=True)
        os.chmod(self.config.base_dir, 0o755)  # noqa: S103 - daemons traverse it
        ensure_tls(self.config)
        state = self._first_round()
        self.supervisor.start()
        if state is not None:
            self.reconciler.wait_listeners(state)
        self.reconciler.start(interval)

    def stop(self) -> None:
        self.reconciler.stop()
        self.supervisor.stop()

    def notify(self) -> None:
        """Reconcile now (call after every committed change affecting this node)."""
        self.reconciler.notify()

    def reconcile_once(self) -> ChangeSet:
        return self.reconciler.reconcile_once()

    def _first_round(self) -> NodeState | None:
        try:
            self.reconciler.reconcile_once()
            return self.reconciler.last_state
        except Exception as exc:
            if not (self.config.base_dir / "postfix" / "main.cf").exists():
                raise
            logger.warning("first reconcile failed (%s); starting from the previous files", exc)
            return None
