"""Delete the mail of mailboxes that left the desired state (``mail/<domain>/<local>``).

The reconciler calls this only after a successfully read state has been applied and Dovecot
runs with the new passwd-files, so a removed mailbox can no longer log in and re-create its
directory. Only real directories whose names are valid domains and local parts are candidates;
symlinks, other names and anything outside the mail root are never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from adbtd.mailnode.render import is_domain_name, is_local_part
from adbtd.mailnode.state import NodeState

logger = logging.getLogger("adbtd.mailnode")


def hosted_mail_dirs(state: NodeState) -> set[tuple[str, str]]:
    """``(domain, local)`` of every mailbox in ``state``, as Dovecot names its home (``%Lu``)."""
    dirs: set[tuple[str, str]] = set()
    for mailbox in state.mailboxes:
        local, _, domain = mailbox.email.lower().rpartition("@")
        dirs.add((domain, local))
    return dirs


def remove_orphan_mail(mail_root: Path, keep: set[tuple[str, str]]) -> list[str]:
    """Delete every mailbox directory under ``mail_root`` not in ``keep``, then domain
    directories left empty; returns the removed ``domain/local`` names."""
    removed: list[str] = []
    for domain_dir in _real_dirs(mail_root, is_domain_name):
        domain = domain_dir.name
        for mailbox_dir in _real_dirs(domain_dir, is_local_part):
            if (domain, mailbox_dir.name) in keep:
                continue
            if _remove_tree(mailbox_dir):
                removed.append(f"{domain}/{mailbox_dir.name}")
        if not any(d == domain for d, _ in keep):
            _remove_if_empty(domain_dir)
    return sorted(removed)


def _real_dirs(parent: Path, valid_name: Callable[[str], bool]) -> list[Path]:
    """Sub-directories (not symlinks) of ``parent`` whose names pass ``valid_name``."""
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        if not valid_name(entry.name):
            continue
        if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            logger.warning("leaving %s alone: not a plain directory", entry.path)
            continue
        found.append(Path(entry.path))
    return sorted(found)


def _remove_tree(path: Path) -> bool:
    """``rmtree`` refuses a symlinked top and, on Linux, never follows links inside the tree."""
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        return False
    try:
        shutil.rmtree(path)
    except OSError as exc:  # retried on the next round
        logger.error("cannot remove the mail of %s: %s", path, exc)
        return False
    return True


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
