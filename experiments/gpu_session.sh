#!/usr/bin/env bash
# Issue 5's GPU results (experiments/train_reference.py --budget), sized for 15-minute device
# sessions. It needs no install and no jwave on the GPU host (PYTHONPATH=. is set here); run it from
# the repository root once or more per session, on the same warm machine:
#
#   bash experiments/gpu_session.sh                        # first call: at most 540 s
#   SESSION_SECONDS=300 bash experiments/gpu_session.sh    # next call: what the session has left,
#                                                          # less a minute
#
# Every call runs the stages in order (stepper, optics, usct, maxwell, ablation, unet; the speed
# study inside the first three) and skips those whose results
# experiments/results/surrogates_gpu_budget.json already holds (--skip-done). A stage cut short by
# the time limit resumes from its checkpoints in the next call on the same warm machine
# (runs/reference_budget, ignored by git). That results file is tracked: commit it after a session
# and the next device session, on a bare machine, goes on with the stages still missing (no stage
# needs another's trained runs). Each stage records its device and date in the file.
#
# SESSION_SECONDS (default 540) bounds the call, so it ends inside the device tool's 10-minute
# limit. On any exit, when $OUT is set, the results file (.json, .md) and this call's log are
# copied there.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 0 ]; then
  echo "usage: [SESSION_SECONDS=N] bash experiments/gpu_session.sh" >&2
  exit 2
fi
budget=${SESSION_SECONDS:-540}
if [ "$budget" -lt 60 ]; then
  echo "SESSION_SECONDS must be at least 60, got $budget" >&2
  exit 2
fi
results=experiments/results
log=runs/gpu_session.log
mkdir -p runs
export PYTHONPATH=. PYTHONUNBUFFERED=1

copy_out() {
  if [ -n "${OUT:-}" ]; then
    cp "$results"/surrogates_gpu_budget.json "$results"/surrogates_gpu_budget.md "$log" "$OUT"/ 2>/dev/null
  fi
}
trap copy_out EXIT

timeout -k 10 "$((budget - 15))" python3 experiments/train_reference.py --budget --skip-done \
  --results "$results" 2>&1 | tee "$log"
echo "gpu_session: $SECONDS s" | tee -a "$log"
