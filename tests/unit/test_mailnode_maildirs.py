"""Mail of removed mailboxes goes; nothing else under the mail root, and nothing outside it."""

from __future__ import annotations

from pathlib import Path

from adbtd.mailnode.maildirs import hosted_mail_dirs, remove_orphan_mail
from adbtd.mailnode.state import NodeMailbox, NodeState


def mailbox(root: Path, domain: str, local: str) -> Path:
    home = root / domain / local
    (home / "Maildir" / "cur").mkdir(parents=True)
    (home / "Maildir" / "cur" / "1.mail").write_text("hello\n")
    return home


def test_removed_mailboxes_and_emptied_domains_go_kept_ones_stay(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    kept = mailbox(root, "a.test", "ann")
    mailbox(root, "a.test", "bob")
    mailbox(root, "b.test", "cat")
    state = NodeState(mailboxes=(NodeMailbox("Ann@A.test", "{X}y", "127.0.1.1"),))
    assert hosted_mail_dirs(state) == {("a.test", "ann")}
    assert remove_orphan_mail(root, hosted_mail_dirs(state)) == ["a.test/bob", "b.test/cat"]
    assert (kept / "Maildir" / "cur" / "1.mail").read_text() == "hello\n"
    assert sorted(p.name for p in root.iterdir()) == ["a.test"]
    assert remove_orphan_mail(root, hosted_mail_dirs(state)) == []


def test_symlinks_and_foreign_names_are_never_followed_or_removed(tmp_path: Path) -> None:
    root, outside = tmp_path / "mail", tmp_path / "outside"
    (outside / "victim").mkdir(parents=True)
    (outside / "victim" / "data").write_text("precious\n")
    (root / "a.test").mkdir(parents=True)
    (root / "a.test" / "eve").symlink_to(outside / "victim")  # a mailbox that is a link
    (root / "evil.test").symlink_to(outside)  # a domain that is a link
    (root / "lost+found").mkdir()  # not a domain name
    (root / "a.test" / "Not Valid").mkdir()  # not a local part
    inner = mailbox(root, "a.test", "joe") / "Maildir" / "escape"
    inner.symlink_to(outside / "victim")  # a link inside a removed mailbox
    removed = remove_orphan_mail(root, set())
    assert removed == ["a.test/joe"]
    assert (outside / "victim" / "data").read_text() == "precious\n"
    assert (root / "a.test" / "eve").is_symlink()
    assert (root / "evil.test").is_symlink()
    assert (root / "lost+found").is_dir()
    assert (root / "a.test" / "Not Valid").is_dir()


def test_a_missing_mail_root_removes_nothing(tmp_path: Path) -> None:
    assert remove_orphan_mail(tmp_path / "absent", set()) == []
