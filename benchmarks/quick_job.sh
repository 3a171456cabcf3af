# Sourced by ab_train_commits.sh and profile_train_commits.sh: the quick profile's hybrid
# training job (seed 0, validation and a checkpoint every 10 steps), as `babelir train`
# arguments after the output folder. Usage: quick_job_args OUTPUT STEPS
quick_job_args() {
  JOB_ARGS=(train --quiet --strategy hybrid --seed 0 --train-data xquad-r
    --languages ar,de,en,es,hi,ru,th,tr,zh --articles '%4!=0' --val-articles auto
    --batch-size 32 --max-steps "$2" --eval-steps 10 --select best-val-loss --lr 1e-4
    --warmup-ratio 0.1 --weight-decay 0.01 --max-seq-length 128 --freeze-embeddings
    --save-steps 10 --logging-steps 5 --output "$1")
}
