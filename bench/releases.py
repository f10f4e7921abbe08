"""underway against an earlier release of itself, on PostgreSQL, in one run.

Usage::

    python -m bench.releases --against v0.1.0           # bench.jobs_postgres --quick, 5 rounds
    python -m bench.releases --against c90f70d --rounds 3 --bench jobs_postgres --quick

A release's code is checked out into a temporary git worktree; each round then runs the given
benchmark (underway only) once on the earlier code and once on this tree's, alternately, so
a busy or idle spell of the machine falls on both. The earlier code is put first on
``PYTHONPATH``, so the benchmark's own driver is this tree's for both sides and only the
library differs. The output is one line per invocation and, last, one JSON object: for each
figure the benchmark reports (jobs processed and inserted per second), the median over the
rounds of each side and the ratio of medians, this tree over the earlier release.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._harness import spread

ROOT = Path(__file__).resolve().parent.parent


def _run(module: str, args: list[str], src: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    cmd = [sys.executable, "-m", f"bench.{module}", *args, "--systems", "underway"]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    figures: dict[str, float] = summary["figures"]
    return {
        k: float(v)
        for k, v in figures.items()
        if k.startswith("underway_") and k.endswith("_per_s") and isinstance(v, int | float)
    }


def main() -> None:
    """Parse the options, run the rounds and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--against", required=True, help="the earlier release: a tag or commit")
    p.add_argument("--rounds", type=int, default=5, help="invocations per side (default 5)")
    p.add_argument("--bench", default="jobs_postgres", help="the benchmark module of bench/")
    opts, rest = p.parse_known_args()
    if opts.rounds < 1:
        p.error("--rounds must be at least 1")
    args = rest or ["--quick"]
    with tempfile.TemporaryDirectory(prefix="underway-release-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(tree), opts.against],
            cwd=ROOT,
            check=True,
        )
        sides: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        try:
            for n in range(opts.rounds):
                for side, src in (("before", tree / "src"), ("after", ROOT / "src")):
                    got = _run(opts.bench, args, src)
                    sides[side].append(got)
                    shown = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(got.items()))
                    print(f"round {n + 1} {side}: {shown}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    keys = sorted(set(sides["before"][0]) & set(sides["after"][0]))
    result: dict[str, object] = {"against": opts.against, "rounds": opts.rounds, "args": args}
    for key in keys:
        before = spread([r[key] for r in sides["before"]])
        after = spread([r[key] for r in sides["after"]])
        result[key] = {
            "before": before.as_dict(),
            "after": after.as_dict(),
            "ratio": round(after.median / before.median, 3),
        }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
