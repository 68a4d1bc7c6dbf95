"""Supervisor failure paths against the real daemon binaries."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from adbtd.mailnode.apply import Daemon
from adbtd.mailnode.daemons import DaemonError
from adbtd.mailnode.state import NodeConfig
from adbtd.mailnode.supervisor import Supervisor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("opendkim") is None, reason="needs root and opendkim"
    ),
]


def test_a_daemon_that_cannot_start_raises_with_its_log(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "opendkim").mkdir()
    (tmp_path / "opendkim" / "opendkim.conf").write_text("Socket nonsense:here\n")
    config = NodeConfig(
        base_dir=tmp_path, hostname="mail.broken.test", submission_port=1, imap_port=2, smtp_port=3
    )
    supervisor = Supervisor(config)
    with pytest.raises(DaemonError, match="opendkim exited") as failed:
        supervisor.start()
    assert "log " in str(failed.value)
    assert all(supervisor.pid(name) is None for name in Daemon)
