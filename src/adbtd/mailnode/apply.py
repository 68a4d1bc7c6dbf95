"""Write rendered files to disk: only what changed, atomically, with the right owner and mode.

Every file goes temp → fsync → rename, so a daemon never reads half a file and a failure leaves
the previous files in place. A manifest remembers what we wrote, so files of removed domains are
deleted and nothing else under ``base_dir`` is ever touched.
"""

from __future__ import annotations

import enum
import grp
import json
import os
import pwd
import secrets
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from adbtd.mailnode.layout import DKIM_KEYS_DIR, MANIFEST
from adbtd.mailnode.render import RenderedFile

POSTMAP_TIMEOUT = 60.0
# Directories whose access matters: OpenDKIM refuses keys under a directory others can read.
_DIR_MODES: dict[str, tuple[int, str | None, str | None]] = {
    DKIM_KEYS_DIR: (0o700, "opendkim", "opendkim"),
}


# Postfix re-reads main.cf until its mtime is over a second old (it guards against a file still
# being edited), so every postmap or reload right after a write would stall for ~1.5 s.
_SETTLED = frozenset({"postfix/main.cf"})
SETTLE_SECONDS = 2.0


class Daemon(enum.StrEnum):
    """The three daemons a node runs; the first path component of a file names its reader."""

    POSTFIX = "postfix"
    DOVECOT = "dovecot"
    OPENDKIM = "opendkim"


class ApplyError(RuntimeError):
    """Writing the files or building a Postfix map failed; the previous files stay in force."""


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What one apply did, and which daemons must reload to see it."""

    written: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    postmapped: tuple[str, ...] = ()
    reload: frozenset[Daemon] = frozenset()
    removed_mail: tuple[str, ...] = ()  # maildirs of removed mailboxes (``domain/local``)

    @property
    def changed(self) -> bool:
        return bool(self.written or self.deleted or self.postmapped or self.removed_mail)


def apply_files(base_dir: Path, rendered: Mapping[str, RenderedFile]) -> ChangeSet:
    """Make ``base_dir`` match ``rendered``; returns what changed and what must reload."""
    previous = _read_manifest(base_dir)
    changed = [rel for rel, f in rendered.items() if not _is_current(base_dir / rel, f)]
    passwd_mtimes = {
        rel: _mtime(base_dir / rel) for rel in changed if rendered[rel].reread_on_mtime
    }
    _write_all(base_dir, {rel: rendered[rel] for rel in changed})
    for rel, old_mtime in passwd_mtimes.items():
        bump_mtime(base_dir / rel, old_mtime)
    for rel in _SETTLED.intersection(changed):
        settle_mtime(base_dir / rel)
    deleted = sorted(rel for rel in previous - rendered.keys() if _unlink(base_dir / rel))
    maps = [rel for rel, f in rendered.items() if f.postmap and _needs_postmap(base_dir / rel)]
    if maps:
        run_postmap(base_dir, maps)
    if previous != set(rendered):
        _write_manifest(base_dir, rendered.keys())
    # A rebuilt map is seen by a running Postfix process only after its next request, so the
    # first message of a new domain could still be routed by the old map: reload on any change
    # (graceful: sessions in progress finish on the old processes).
    reload = {Daemon(rel.split("/", 1)[0]) for rel in [*changed, *deleted]}
    return ChangeSet(tuple(changed), tuple(deleted), tuple(maps), frozenset(reload))


def bump_mtime(path: Path, old_mtime: float | None) -> None:
    """Dovecot re-reads a passwd-file only when its whole-second mtime (or size) changes, so a
    rewrite within the same second must still move the mtime forward."""
    if old_mtime is None:
        return
    current = path.stat().st_mtime
    if int(current) <= int(old_mtime):
        newer = float(int(old_mtime) + 1)
        os.utime(path, (newer, newer))


def settle_mtime(path: Path) -> None:
    """Date a freshly written main.cf slightly back so Postfix tools read it without waiting."""
    past = time.time() - SETTLE_SECONDS
    os.utime(path, (past, past))


def run_postmap(base_dir: Path, maps: Iterable[str]) -> None:
    """Rebuild ``hash:`` tables; running Postfix processes notice the new ``.db`` themselves."""
    config_dir = base_dir / "postfix"
    args = ["postmap", "-c", str(config_dir), *(f"hash:{base_dir / rel}" for rel in maps)]
    try:
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=POSTMAP_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ApplyError(f"postmap failed to run: {exc}") from exc
    if result.returncode != 0:
        raise ApplyError(f"postmap failed: {result.stderr.strip()[-2000:]}")


def write_atomic(path: Path, file: RenderedFile) -> None:
    """temp (created with the final mode) → fsync → chown → rename over ``path``."""
    _ensure_dir(path.parent)
    tmp = _stage(path, file)
    os.replace(tmp, path)


def _write_all(base_dir: Path, files: Mapping[str, RenderedFile]) -> None:
    """Stage every file first so a failure renames nothing, then move them all into place."""
    staged: list[tuple[Path, Path]] = []
    try:
        for rel, file in files.items():
            path = base_dir / rel
            _ensure_dir(path.parent, base_dir)
            staged.append((_stage(path, file), path))
    except OSError as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise ApplyError(f"cannot write node files: {exc}") from exc
    for tmp, path in staged:
        os.replace(tmp, path)


def _stage(path: Path, file: RenderedFile) -> Path:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file.mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(file.content.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file.mode)
        _chown(tmp, file.user, file.group)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _is_current(path: Path, file: RenderedFile) -> bool:
    """True when the file already has exactly this content, mode and owner."""
    try:
        st = path.stat()
        if (st.st_mode & 0o7777) != file.mode or not _owned_as(st, file):
            return False
        return path.read_bytes() == file.content.encode("utf-8")
    except FileNotFoundError:
        return False


def _owned_as(st: os.stat_result, file: RenderedFile) -> bool:
    if os.geteuid() != 0:
        return True
    uid, gid = _ids(file.user, file.group)
    return (uid == -1 or st.st_uid == uid) and (gid == -1 or st.st_gid == gid)


def _chown(path: Path, user: str | None, group: str | None) -> None:
    if os.geteuid() != 0:
        return
    uid, gid = _ids(user, group)
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)


def _ids(user: str | None, group: str | None) -> tuple[int, int]:
    uid = pwd.getpwnam(user).pw_uid if user else -1
    gid = grp.getgrnam(group).gr_gid if group else -1
    return uid, gid


def _ensure_dir(directory: Path, base_dir: Path | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    if base_dir is not None:
        rel = directory.relative_to(base_dir).as_posix()
        if rel in _DIR_MODES:
            mode, user, group = _DIR_MODES[rel]
            _chown(directory, user, group)
            os.chmod(directory, mode)


def _needs_postmap(path: Path) -> bool:
    db = path.with_name(path.name + ".db")
    try:
        return db.stat().st_mtime < path.stat().st_mtime
    except FileNotFoundError:
        return True


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _read_manifest(base_dir: Path) -> set[str]:
    try:
        data = json.loads((base_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as exc:
        raise ApplyError(f"unreadable manifest {base_dir / MANIFEST}: {exc}") from exc
    return {str(p) for p in data.get("files", []) if ".." not in str(p).split("/")}


def _write_manifest(base_dir: Path, paths: Iterable[str]) -> None:
    body = json.dumps({"files": sorted(paths)}, indent=1) + "\n"
    write_atomic(base_dir / MANIFEST, RenderedFile(body, 0o644))
