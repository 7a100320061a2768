#!/usr/bin/env bash
# The lent-GPU session in one command (see benchmarks/RESULTS.md). Expects, beside the working tree:
#   .whl/      grad-cam, ttach and timm wheels (the GPU image lacks grad-cam)
#   benchdata/ copies of ../shared/data/{lung-nodule-ct,kidney-stone-ct}
# 1. benchmarks/cuda_check.py: CUDA + AMP training on the embedded sample, throughput table;
# 2. the benchmark's accuracy and heatmap runs (no CPU cost: that is measured on the CPU machine with
#    `rensenet benchmark --config benchmarks/full.yaml --costs-only`), $JOBS units at once, stopped after
#    $BUDGET seconds (finished runs are kept: the benchmark resumes);
# 3. the report's heatmap figures (they need the checkpoints, which stay on the GPU machine).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; JOBS=${JOBS:-14}; BUDGET=${BUDGET:-380}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
[ -e ../shared/data ] || { mkdir -p ../shared && ln -s "$PWD/benchdata" ../shared/data; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

timeout 120 python3 benchmarks/cuda_check.py 2>&1 | tee "$OUT/cuda_check.txt"
start=$(date +%s)
timeout -k 10 "$BUDGET" python3 -m rensenet benchmark --config benchmarks/full.yaml \
  --tasks lung-nodule-ct kidney-stone-ct --jobs "$JOBS" --no-cost --no-report 2>&1 | tail -20
pkill -f "rensenet train" ; pkill -f "rensenet benchmark"; sleep 2
echo "benchmark phase: $(( $(date +%s) - start )) s"
timeout 130 python3 -m rensenet benchmark --config benchmarks/full.yaml --report-only 2>&1 | tail -3
tar czf "$OUT/bench.tgz" --exclude='*.pt' runs/benchmark benchmarks/results.json benchmarks/RESULTS.md benchmarks/*.png
ls -la "$OUT"
