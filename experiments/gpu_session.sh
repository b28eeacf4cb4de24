#!/usr/bin/env bash
# What is left for a GPU, sized for one 15-minute device session in two calls on the same warm
# machine (plan and timings in the README's GPU sections; run from the repository root, with the
# jwave wheels copied to .gpu-wheels/ and carried, as for experiments/gpu_benchmarks.sh):
#
#   bash experiments/gpu_session.sh 1                      # issue 5: stepper, optics, usct, speed
#   SESSION_SECONDS=300 bash experiments/gpu_session.sh 2  # issue 5: what call 1 did not finish,
#                                                          # then maxwell, ablation and the U-Net
#                                                          # baselines
#
# (The solver and data benchmarks have their own script, experiments/gpu_benchmarks.sh; their H100
# tables were taken on 2026-11-26.)
#
# SESSION_SECONDS (default 540) bounds the whole call, so it ends inside the device tool's
# 10-minute limit; give the second call what the session has left, less a minute. train_reference.py saves after every stage and resumes, and its results file
# in runs/gpu_results (ignored by git, so kept on a warm machine between calls) merges the stages
# of both calls. On any exit, when $OUT is set, the result tables (.md) and a tarball of every
# result file (gpu_results.tgz: train_reference JSON and Markdown) are copied there: a few files,
# under the tool's limit of 8.
set -uo pipefail
cd "$(dirname "$0")/.."
phase=${1:-}
if [ "$phase" != 1 ] && [ "$phase" != 2 ]; then
  echo "usage: bash experiments/gpu_session.sh 1|2" >&2
  exit 2
fi
budget=${SESSION_SECONDS:-540}
end=$((SECONDS + budget))
results=runs/gpu_results
mkdir -p "$results"
export PYTHONPATH=. PYTHONUNBUFFERED=1

copy_out() {
  if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/gpu_results.tgz" -C runs gpu_results
    cp "$results"/*.md "$OUT"/ 2>/dev/null
  fi
}
trap copy_out EXIT

left() { echo $((end - SECONDS)); }

if [ "$phase" = 1 ]; then
  timeout -k 10 "$(($(left) - 15))" python3 experiments/train_reference.py --budget \
    --stages stepper,optics,usct,speed --results "$results"
else
  timeout -k 10 "$(($(left) - 15))" python3 experiments/train_reference.py --budget --skip-done \
    --stages stepper,optics,usct,speed,maxwell,ablation,unet --results "$results"
fi
echo "gpu_session $phase: $((SECONDS)) s"
