#!/usr/bin/env bash
# One prepared command for a lent GPU (H100/H200): nine AMI endpoints (three-level logistic) on
# 1,000,000 patients and a 10,000-outcome Gaussian random-slope sweep, each in float64 and float32,
# each in a fresh process (cold compilation cache); prints a short table and writes
# benchmarks/_work/bench_sweep_gpu.json.
#
#   benchmarks/gpu.sh                  # full size (meant for a GPU; needs jax with CUDA, e.g. jax[cuda12])
#   benchmarks/gpu.sh --small          # 20,000 patients and 200 outcomes: runs on a CPU in a few minutes
#   JAXMIX_GPU_SMALL=1 benchmarks/gpu.sh
#   N_PATIENTS=200000 N_OUTCOMES=2000 benchmarks/gpu.sh   # any other size
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${N_PATIENTS:-1000000}"
K="${N_OUTCOMES:-10000}"
if [[ "${1:-}" == "--small" || -n "${JAXMIX_GPU_SMALL:-}" ]]; then
  N="${N_PATIENTS:-20000}"
  K="${N_OUTCOMES:-200}"
fi
PY="${PYTHON:-python}"

command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c 'import jax; ds = jax.devices(); print("jax", jax.__version__, "devices:", ds)
if all(d.platform == "cpu" for d in ds): print("note: no GPU visible to jax; running on the CPU")'
"$PY" benchmarks/bench_sweep.py gpu --n-patients "$N" --gaussian-outcomes "$K" --dtypes float64,float32
