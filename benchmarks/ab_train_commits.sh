#!/bin/bash
# Is training slower than at an earlier commit? Interleaved A/B of one quick-recipe job.
#
#   benchmarks/ab_train_commits.sh BASE_REV [STEPS] [ORDER]
#
# Runs the quick profile's hybrid training job (`babelir train`, seed 0, validation and a
# checkpoint every 10 steps) at BASE_REV (a git worktree under $TMPDIR) and at this
# checkout, in the same venv (.venv; PYTHONPATH picks the code), in ORDER (default
# "base head head base head base base head": ABBA BAAB cancels drift), one job at a time.
# Prints each job's wall and timing_s, then the mean of head - base over adjacent pairs
# with its 95% t-interval. Run it alone on the machine: a second heavy job invalidates it.
set -euo pipefail
BASE_REV=${1:?usage: $0 BASE_REV [STEPS] [ORDER]}
STEPS=${2:-50}
ORDER=${3:-"base head head base head base base head"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=commits_common.sh
source "$ROOT/benchmarks/commits_common.sh"
two_checkouts ab "$BASE_REV"
: > "$WORK/walls"
i=0
for rev in $ORDER; do
  i=$((i + 1))
  out="$WORK/out-$i"
  quick_job_args "$out" "$STEPS"
  start=$(date +%s.%N)
  PYTHONPATH=${SRC[$rev]} "$PY" -c "from babelir.cli.main import main; main()" "${JOB_ARGS[@]}" \
    > "$WORK/log-$i.txt" 2>&1 \
    || { echo "job $i ($rev) failed:"; tail -5 "$WORK/log-$i.txt"; exit 1; }
  wall=$("$PY" -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$start" "$(date +%s.%N)")
  echo "$rev $wall" >> "$WORK/walls"
  echo "job $i $rev: wall $wall s, timing_s $("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['timing_s'])" "$out/babelir-train.json")"
  rm -rf "$out"
done
"$PY" - "$WORK/walls" <<'PYEOF'
import sys
from scipy import stats
rows = [line.split() for line in open(sys.argv[1])]
pairs = [(rows[k], rows[k + 1]) for k in range(0, len(rows) - 1, 2)]
d = [float(b[1]) - float(a[1]) if a[0] == "base" else float(a[1]) - float(b[1]) for a, b in pairs]
base = [float(w) for r, w in rows if r == "base"]
mean = sum(d) / len(d)
print(f"head - base over {len(d)} adjacent pairs: {mean:+.1f} s ({mean / (sum(base) / len(base)):+.1%} of base)")
if len(d) > 1:
    sd = (sum((x - mean) ** 2 for x in d) / (len(d) - 1)) ** 0.5
    hw = stats.t.ppf(0.975, len(d) - 1) * sd / len(d) ** 0.5
    print(f"95% t-interval: [{mean - hw:+.1f}, {mean + hw:+.1f}] s"
          + ("  (not resolved)" if mean - hw < 0 < mean + hw else ""))
PYEOF
