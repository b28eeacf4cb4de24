#!/usr/bin/env bash
# Every solver and data benchmark on a GPU host, in one call, from the repository root.
#
# The GPU host has JAX, equinox, diffrax, flax, optax, orbax and tensorstore but no network and no
# install of this project: run it from the checkout with PYTHONPATH=. . jwave comes from the four
# pure wheels in ../shared/gpu-wheels, copied into the ignored folder .gpu-wheels/ beforehand
# (cp ../shared/gpu-wheels/*.whl .gpu-wheels/) and carried along.
#
#   bash experiments/gpu_benchmarks.sh [acoustic|maxwell|data ...]   # default: all three
#
# Each script writes experiments/results/<name>_benchmark.{md,json} (bench_data: bench_data_gpu.*)
# with the device name, date and command, again after every finished section; a short table is
# printed last. BENCH_ARGS is passed to each script (for one script, e.g. BENCH_ARGS="--skip
# throughput memory checkpoint" for bench_acoustic's time-to-accuracy scan alone; skipped sections
# keep their last results). BENCH_SECONDS (default 170) bounds each script, so that one slow section cannot
# starve the others within a 10-minute device call. When $OUT is set (the device tool's return
# folder), the result files are copied there on any exit, also when a script was cut short.
set -euo pipefail
cd "$(dirname "$0")/.."
copy_out() {
  if [ -n "${OUT:-}" ]; then
    cp experiments/results/acoustic_benchmark.* experiments/results/acoustic_benchmark_accuracy.png \
      experiments/results/maxwell_benchmark.* experiments/results/bench_data_gpu.* "$OUT"/ 2>/dev/null || true
  fi
}
trap copy_out EXIT
site=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .gpu-wheels/*.whl
export PYTHONPATH="$site:." PYTHONUNBUFFERED=1
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(acoustic maxwell data)
for bench in "${benches[@]}"; do
  echo "== bench_$bench"
  # shellcheck disable=SC2086  # BENCH_ARGS: extra arguments, split on spaces (e.g. "--skip throughput")
  timeout -k 10 "${BENCH_SECONDS:-170}" python3 "experiments/bench_$bench.py" ${BENCH_ARGS:-} \
    || echo "bench_$bench: exit $? (cut short or failed; its finished sections are saved)"
done
tail -n 40 experiments/results/acoustic_benchmark.md experiments/results/maxwell_benchmark.md \
  experiments/results/bench_data_gpu.md 2>/dev/null || true
