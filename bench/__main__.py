"""Run every benchmark (``python -m bench``), or the named ones (``python -m bench api_mail``).

Each runs in its own process, so one benchmark's daemons and arguments never leak into another;
extra arguments after ``--`` go to every selected benchmark.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str]) -> int:
    names, _, extra = (
        (argv[: argv.index("--")], None, argv[argv.index("--") + 1 :])
        if ("--" in argv)
        else (argv, None, [])
    )
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; have {', '.join(available())}")
        return 2
    failed = []
    for name in names or available():
        print(f"== bench {name} ==", flush=True)
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *extra], cwd=HERE.parent)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
