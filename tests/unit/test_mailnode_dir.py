"""Where the node's files go: the daemons' own users must be able to reach them."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from adbtd.mailnode.node import FALLBACK_ROOT, node_dir
from adbtd.settings import build_settings


def test_data_dir_is_used_when_reachable() -> None:
    reachable = Path("/var/tmp") / f"adbtd-{secrets.token_hex(4)}"  # pytest's tmp is 0700
    settings = build_settings(data_dir=reachable / "var")
    try:
        assert node_dir(settings) == (reachable / "var" / "mailnode").resolve()
    finally:
        shutil.rmtree(reachable, ignore_errors=True)


def test_private_parent_moves_the_node_under_var_lib(tmp_path: Path) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    settings = build_settings(data_dir=private / "checkout" / "var")
    chosen = node_dir(settings)
    assert chosen.parent == FALLBACK_ROOT and chosen.name.startswith("mailnode-")
    assert node_dir(build_settings(data_dir=private / "checkout" / "var")) == chosen
    assert node_dir(build_settings(data_dir=private / "other" / "var")) != chosen


def test_explicit_setting_wins(tmp_path: Path) -> None:
    settings = build_settings(data_dir=tmp_path / "var", mailnode_dir=tmp_path / "node")
    assert node_dir(settings) == (tmp_path / "node").resolve()
