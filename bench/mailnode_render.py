"""Benchmark: render + apply a node of 10,000 mailboxes on 1,000 domains, then one change.

Run: ``.venv/bin/python bench/mailnode_render.py`` (as root, so owners are set as in production).
Keys and hashes are made before timing (a few reused); the timed part is render + apply.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from adbtd.mailnode.apply import apply_files
from adbtd.mailnode.keys import generate_dkim_key, hash_mailbox_password
from adbtd.mailnode.render import render_node
from adbtd.mailnode.state import NodeConfig, NodeDomain, NodeMailbox, NodeState

LIMIT_SECONDS = 2.0


def build_state(domains: int, mailboxes: int, ips: int) -> NodeState:
    keys = [generate_dkim_key() for _ in range(4)]
    hashes = [hash_mailbox_password(f"password-{i}", cost=4) for i in range(8)]
    addresses = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(ips)]
    node_domains = tuple(
        NodeDomain(f"tenant{d}.example", "adbtd-2026", keys[d % len(keys)], (addresses[d % ips],))
        for d in range(domains)
    )
    node_mailboxes = tuple(
        NodeMailbox(
            f"user{m}@tenant{m % domains}.example",
            hashes[m % len(hashes)],
            addresses[(m % domains) % ips],
        )
        for m in range(mailboxes)
    )
    return NodeState(ips=tuple(addresses), domains=node_domains, mailboxes=node_mailboxes)


def timed_round(state: NodeState, config: NodeConfig) -> tuple[float, float, int, list[str]]:
    started = time.perf_counter()
    rendered = render_node(state, config)
    rendered_at = time.perf_counter()
    changes = apply_files(config.base_dir, rendered)
    done = time.perf_counter()
    return rendered_at - started, done - rendered_at, len(rendered), list(changes.written)


def one_run(state: NodeState) -> dict[str, object]:
    base = Path(tempfile.mkdtemp(prefix="adbtd-bench-"))
    config = NodeConfig(
        base_dir=base,
        hostname="mail.bench.test",
        submission_port=587,
        imap_port=993,
        smtp_port=25,
        outbound_relay="127.0.0.1:2525",
    )
    try:
        render_s, apply_s, count, _ = timed_round(state, config)
        noop_render, noop_apply, _, noop_written = timed_round(state, config)
        first = state.mailboxes[0]
        changed = replace(
            state,
            mailboxes=(
                replace(first, password_hash=state.mailboxes[1].password_hash + "x"),
                *state.mailboxes[1:],
            ),
        )
        one_render, one_apply, _, one_written = timed_round(changed, config)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {
        "files": count,
        "first": render_s + apply_s,
        "render": render_s,
        "apply": apply_s,
        "noop": noop_render + noop_apply,
        "noop_written": noop_written,
        "one": one_render + one_apply,
        "one_written": one_written,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--mailboxes", type=int, default=10000)
    parser.add_argument("--ips", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    state = build_state(args.domains, args.mailboxes, args.ips)
    runs = [one_run(state) for _ in range(args.runs)]
    firsts = sorted(float(str(r["first"])) for r in runs)
    print(f"machine: {platform.platform()}, python {platform.python_version()}")
    print(
        f"state: {args.mailboxes} mailboxes, {args.domains} domains, {args.ips} IPs; "
        f"{runs[0]['files']} files; {args.runs} runs (fresh directory each)"
    )
    for name in ("render", "apply", "first", "noop", "one"):
        values = [float(str(r[name])) for r in runs]
        print(f"{name:>6}: median {statistics.median(values):.3f} s, max {max(values):.3f} s")
    print(f"no-op apply wrote: {runs[0]['noop_written']}")
    print(f"one-mailbox change wrote: {runs[0]['one_written']}")
    assert all(not r["noop_written"] for r in runs)
    assert all(not any(".private" in p for p in r["one_written"]) for r in runs)  # type: ignore[attr-defined]
    verdict = "PASS" if firsts[-1] < LIMIT_SECONDS else "FAIL"
    print(f"{verdict}: slowest full render+apply {firsts[-1]:.3f} s (limit {LIMIT_SECONDS} s)")


if __name__ == "__main__":
    main()
