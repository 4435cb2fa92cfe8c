#!/usr/bin/env bash
# The train.sbatch run on one machine without Slurm: mpirun -np WORKERS+1 --oversubscribe --bind-to none.
#
#   jobscripts/workstation.sh                       # 4 workers + coordinator, defaults as train.sbatch
#   WORKERS=8 CODE=frc S=2 jobscripts/workstation.sh
#   RUN_DIR=results/my-run jobscripts/workstation.sh   # rerun after Ctrl-C / USR1: resumes from ckpt.h5
#
# Same environment variables as train.sbatch (CONFIG, DATA, MODEL, CODE, S, DEADLINE_MS, ITERATIONS, LR,
# STRAGGLERS, SEED, CHECKPOINT_EVERY, EXTRA_ARGS) plus WORKERS. Result: results/<JOB_NAME>-local-<date>-<pid>/
# Ctrl-C, or `kill -USR1` / `kill -TERM` of this script, makes the ranks checkpoint and exit 75 (mpirun
# runs in its own session: the script forwards USR1 to it); rerun with the same RUN_DIR to resume.
# shellcheck source=jobscripts/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

GRADCODE_LAUNCHER="${GRADCODE_LAUNCHER:-mpirun}"
unset SLURM_JOB_ID SLURM_ARRAY_JOB_ID SLURM_ARRAY_TASK_ID # a workstation run, even from inside an allocation

if [[ -z "${CONFIG:-}" ]]; then
  : "${DATA:=datasets/synth.h5}" "${MODEL:=logistic}" "${CODE:=cyclic-mds}" "${S:=1}"
  : "${DEADLINE_MS:=1000}" "${ITERATIONS:=100}" "${LR:=0.5}" "${STRAGGLERS:=none}" "${SEED:=1}"
  : "${CHECKPOINT_EVERY:=50}"
fi
WORKERS="${WORKERS:-4}"
[[ "$WORKERS" =~ ^[0-9]+$ && "$WORKERS" -ge 1 ]] || gc_die "WORKERS must be >= 1, got '$WORKERS'"

gc_run_dir "${JOB_NAME:-gradcode}"
gc_provenance
gc_train_args
gc_log "workstation run: $WORKERS workers + coordinator on $(hostname) ($(gc_cpus) CPUs)"
gc_run "$((WORKERS + 1))"
gc_finish
