#!/usr/bin/env bash
# A lent-GPU session of the benchmark (see benchmarks/results_notes.md). Expects, beside the working tree
# (every call carries them again: a later call on the same machine finds only runs/ left):
#   .whl/          grad-cam, ttach and timm wheels (the GPU image lacks grad-cam)
#   benchdata/T    a copy of ../shared/data/T for each task in $TASKS (the tree that travels is capped at 64 MiB:
#                  kidney-ct-slices, 56 MB, goes alone)
#   benchstate/    runs/benchmark without checkpoints or figures, so that what is finished is not redone
# Trains accuracy and heatmap runs only (no CPU cost: that is measured on the CPU machine with
# `rensenet benchmark --config benchmarks/full.yaml --costs-only`) for $BUDGET seconds, then packs the results of
# $TASKS without checkpoints (each seed's explain/lesions.npz redraws the heatmap figure) as $OUT/bench.tgz.part-*,
# 15 MiB pieces (files over 16 MiB do not come back). Join them with `cat bench.tgz.part-* | tar xz`.
#   TASKS="kidney-ct-slices" MODELS="" BUDGET=400 bash benchmarks/gpu_run.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; BUDGET=${BUDGET:-400}; JOBS=${JOBS:-8}; PARALLEL=${PARALLEL:-3}
TASKS=${TASKS:-lung-nodule-ct kidney-stone-ct}; MODELS=${MODELS:-}  # empty: every model in the config
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
[ -e ../shared/data ] || { mkdir -p ../shared && ln -s "$PWD/benchdata" ../shared/data; }
[ -d runs/benchmark ] || { mkdir -p runs && cp -r benchstate runs/benchmark; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

start=$(date +%s)
# shellcheck disable=SC2086  # word splitting of the lists is meant
timeout -k 10 "$BUDGET" python3 -m rensenet benchmark --config benchmarks/full.yaml --no-cost --no-report \
  --tasks $TASKS ${MODELS:+--models $MODELS} --jobs "$JOBS" --parallel-runs "$PARALLEL" 2>&1 | tail -5
pkill -f "rensenet train"; sleep 2
echo "benchmark phase: $(( $(date +%s) - start )) s"
dirs="runs/benchmark/logs"; for t in $TASKS; do dirs="$dirs runs/benchmark/$t runs/benchmark/sweep/$t"; done
# shellcheck disable=SC2046
tar cz --exclude='*.pt' --exclude='*.png' $(ls -d $dirs 2>/dev/null) | split -b 15M - "$OUT/bench.tgz.part-"
find runs/benchmark -name record.json | wc -l
ls -la "$OUT"
