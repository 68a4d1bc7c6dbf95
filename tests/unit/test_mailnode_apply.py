"""Applying writes only what changed, with the right modes, and deletes only what it wrote."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from adbtd.mailnode.apply import Daemon, apply_files, bump_mtime
from adbtd.mailnode.render import RenderedFile

needs_postmap = pytest.mark.skipif(shutil.which("postmap") is None, reason="needs postmap")


def files(**extra: RenderedFile) -> dict[str, RenderedFile]:
    base = {
        "postfix/main.cf": RenderedFile("# main\n"),
        "postfix/virtual_domains": RenderedFile("a.test OK\n", postmap=True),
        "dovecot/passwd.d/127.0.1.1": RenderedFile(
            "a@a.test:{PLAIN}x::::::\n", 0o640, reread_on_mtime=True
        ),
        "opendkim/keys/a.test.s.private": RenderedFile("KEY-A\n", 0o600),
        "opendkim/keys/b.test.s.private": RenderedFile("KEY-B\n", 0o600),
    }
    base.update(extra)
    return base


@needs_postmap
def test_first_apply_writes_everything_with_modes_and_builds_maps(tmp_path: Path) -> None:
    changes = apply_files(tmp_path, files())
    assert set(changes.written) == set(files())
    assert changes.reload == {Daemon.POSTFIX, Daemon.DOVECOT, Daemon.OPENDKIM}
    assert changes.postmapped == ("postfix/virtual_domains",)
    assert (tmp_path / "postfix/virtual_domains.db").exists()
    assert (tmp_path / "opendkim/keys/a.test.s.private").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "dovecot/passwd.d/127.0.1.1").stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.rglob("*.tmp"))


@needs_postmap
def test_second_apply_of_the_same_files_changes_nothing(tmp_path: Path) -> None:
    apply_files(tmp_path, files())
    changes = apply_files(tmp_path, files())
    assert not changes.changed
    assert changes.reload == frozenset()


@needs_postmap
def test_a_map_change_is_postmapped_and_reloads_postfix_only(tmp_path: Path) -> None:
    apply_files(tmp_path, files())
    key_inode = (tmp_path / "opendkim/keys/a.test.s.private").stat().st_ino
    changes = apply_files(
        tmp_path, files(**{"postfix/virtual_domains": RenderedFile("b.test OK\n", postmap=True)})
    )
    assert changes.written == ("postfix/virtual_domains",)
    assert changes.postmapped == ("postfix/virtual_domains",)
    assert changes.reload == frozenset({Daemon.POSTFIX})
    assert (tmp_path / "opendkim/keys/a.test.s.private").stat().st_ino == key_inode


@needs_postmap
def test_removed_domain_key_is_deleted_and_unrelated_files_are_left_alone(tmp_path: Path) -> None:
    apply_files(tmp_path, files())
    (tmp_path / "opendkim/keys/operator-note.txt").write_text("mine\n")
    rendered = files()
    del rendered["opendkim/keys/b.test.s.private"]
    changes = apply_files(tmp_path, rendered)
    assert changes.deleted == ("opendkim/keys/b.test.s.private",)
    assert changes.reload == {Daemon.OPENDKIM}
    assert not (tmp_path / "opendkim/keys/b.test.s.private").exists()
    assert (tmp_path / "opendkim/keys/operator-note.txt").read_text() == "mine\n"


@needs_postmap
def test_a_mode_change_alone_rewrites_the_file(tmp_path: Path) -> None:
    apply_files(tmp_path, files())
    os.chmod(tmp_path / "opendkim/keys/a.test.s.private", 0o644)
    changes = apply_files(tmp_path, files())
    assert changes.written == ("opendkim/keys/a.test.s.private",)
    assert (tmp_path / "opendkim/keys/a.test.s.private").stat().st_mode & 0o777 == 0o600


def test_passwd_mtime_always_moves_to_a_newer_second(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("x")
    old = path.stat().st_mtime
    path.write_text("y")  # same size, very likely the same second
    bump_mtime(path, old)
    assert int(path.stat().st_mtime) > int(old)


@needs_postmap
def test_files_read_by_mtime_get_a_newer_second_on_every_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "dovecot/passwd.d/127.0.1.1"
    apply_files(tmp_path, files())
    before = path.stat().st_mtime
    for password in ("y", "z"):  # same size, same second
        line = f"a@a.test:{{PLAIN}}{password}::::::\n"
        apply_files(
            tmp_path,
            files(
                **{"dovecot/passwd.d/127.0.1.1": RenderedFile(line, 0o640, reread_on_mtime=True)}
            ),
        )
        assert int(path.stat().st_mtime) > int(before)
        before = path.stat().st_mtime
