# Sourced by ab_train_commits.sh and profile_train_commits.sh (after setting ROOT, the
# checkout, and STEPS): the two checkouts they compare and the job they run.

# Sets PY (the checkout's venv), WORK (a temporary folder, removed on exit) and
# SRC[base|head] (BASE_REV in a git worktree under WORK; this checkout), and prints both.
# Usage: two_checkouts NAME BASE_REV
two_checkouts() {
  PY=$ROOT/.venv/bin/python
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/babelir-$1-XXXXXX")
  git -C "$ROOT" worktree add -q --detach "$WORK/base" "$2"
  trap 'git -C "$ROOT" worktree remove --force "$WORK/base"; rm -rf "$WORK"' EXIT
  declare -gA SRC=([base]="$WORK/base/src" [head]="$ROOT/src")
  "$PY" -c "from babelir.precision import machine; print('machine:', machine())"
  echo "base $(git -C "$WORK/base" rev-parse --short HEAD), head $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo -dirty), $STEPS steps"
}

# The quick profile's hybrid training job (seed 0, validation and a checkpoint every 10
# steps) as `babelir train` arguments, in JOB_ARGS. Usage: quick_job_args OUTPUT STEPS
quick_job_args() {
  JOB_ARGS=(train --quiet --strategy hybrid --seed 0 --train-data xquad-r
    --languages ar,de,en,es,hi,ru,th,tr,zh --articles '%4!=0' --val-articles auto
    --batch-size 32 --max-steps "$2" --eval-steps 10 --select best-val-loss --lr 1e-4
    --warmup-ratio 0.1 --weight-decay 0.01 --max-seq-length 128 --freeze-embeddings
    --save-steps 10 --logging-steps 5 --output "$1")
}
