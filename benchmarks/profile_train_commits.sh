#!/bin/bash
# Does this checkout do more work than an earlier commit in one training job? A check
# that machine drift cannot blur, for when ab_train_commits.sh's timing is not resolved.
#
#   benchmarks/profile_train_commits.sh BASE_REV [STEPS]
#
# Runs the quick profile's hybrid training job (benchmarks/commits_common.sh, default 10
# steps) once at BASE_REV (a git worktree under $TMPDIR) and once at this checkout, in the
# same venv, each under cProfile, after importing babelir once per checkout (so numba's
# cache of the metric kernels is built before, not inside, the profiled job). Prints per job
# the Python calls, their total own time and the logged losses, then the functions whose
# call count differs or whose own time differs by more than 0.5 s. Equal call counts and
# losses mean the same computation; the own-time totals are then timing, with its drift.
set -euo pipefail
BASE_REV=${1:?usage: $0 BASE_REV [STEPS]}
STEPS=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=commits_common.sh
source "$ROOT/benchmarks/commits_common.sh"
two_checkouts prof "$BASE_REV"
printf 'from babelir.cli.main import main\nmain()\n' > "$WORK/babelir_main.py"
for rev in base head; do
  PYTHONPATH=${SRC[$rev]} "$PY" -c "import babelir.evaluation.metrics"  # numba's cache
  quick_job_args "$WORK/out-$rev" "$STEPS"
  PYTHONPATH=${SRC[$rev]} "$PY" -m cProfile -o "$WORK/$rev.prof" "$WORK/babelir_main.py" \
    "${JOB_ARGS[@]}" > "$WORK/log-$rev.txt" 2>&1 \
    || { echo "$rev job failed:"; tail -5 "$WORK/log-$rev.txt"; exit 1; }
done
"$PY" - "$WORK" "$ROOT" <<'PYEOF'
import json
import pstats
import re
import sys
from pathlib import Path

work, root = Path(sys.argv[1]), sys.argv[2]


def load(rev: str) -> dict[tuple[str, str], list[float]]:
    """Calls and own time per function, with each checkout's root and ids made equal."""
    out: dict[tuple[str, str], list[float]] = {}
    for (path, _line, name), (_cc, calls, own, _cum, _callers) in pstats.Stats(
        str(work / f"{rev}.prof")
    ).stats.items():
        path = path.replace(str(work / "base"), "<checkout>")
        path = path.replace(root, "<checkout>")
        key = (re.sub(r" at 0x[0-9a-f]+", "", path), re.sub(r" at 0x[0-9a-f]+", "", name))
        row = out.setdefault(key, [0, 0.0])
        row[0] += calls
        row[1] += own
    return out


runs = {rev: load(rev) for rev in ("base", "head")}
for rev, prof in runs.items():
    info = json.loads((work / f"out-{rev}" / "babelir-train.json").read_text())
    losses = [round(h["loss"], 6) for h in info["log_history"] if "loss" in h]
    print(
        f"{rev}: {sum(r[0] for r in prof.values()):,} Python calls, "
        f"{sum(r[1] for r in prof.values()):.1f} s own time, train {info['timing_s']['train']} s,"
        f" losses {losses}"
    )
base, head = runs["base"], runs["head"]
rows = []
for key in base.keys() | head.keys():
    b, h = base.get(key, [0, 0.0]), head.get(key, [0, 0.0])
    if b[0] != h[0] or abs(b[1] - h[1]) > 0.5:
        rows.append((h[0] - b[0], h[1] - b[1], key))
print(f"{len(rows)} functions differ (calls, or own time by > 0.5 s)")
for title, order in (("calls", 0), ("own time", 1)):
    print(f"largest differences in {title} (head - base):")
    for calls, own, (path, name) in sorted(rows, key=lambda r: -abs(r[order]))[:12]:
        print(f"  {calls:+,} calls {own:+.2f} s  {name}  {path}")
PYEOF
