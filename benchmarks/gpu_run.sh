#!/usr/bin/env bash
# A lent-GPU session of the benchmark (see benchmarks/results_notes.md). Expects, beside the working tree
# (every call carries them again: a later call on the same machine finds only runs/ left):
#   .whl/          grad-cam, ttach and timm wheels (the GPU image lacks grad-cam)
#   benchdata/T    a copy of ../shared/data/T for each task, or the same as tar files: every benchdata-*.tar[.gz]
#                  under .gpu/ or runs/stash/ is unpacked into benchdata/ first. The tree that travels is capped at
#                  64 MiB, so kidney-ct-slices (58 MB) comes in two calls: the first stashes its part in runs/stash/.
#   benchstate/    runs/benchmark without checkpoints, figures or logs, so that what is finished is not redone
#                  (optional: the committed benchmarks/results.json already marks every published run as finished)
# Trains accuracy and heatmap runs only (no CPU cost: that is measured on the CPU machine with
# `rensenet benchmark --config benchmarks/full.yaml --costs-only`) for $BUDGET seconds, then packs the results of
# every task it ran without checkpoints (each seed's explain/lesions.npz redraws the heatmap figure) as
# $OUT/bench.tgz.part-*, 15 MiB pieces (files over 16 MiB do not come back). Join: `cat bench.tgz.part-* | tar xz`.
# The pack holds benchstate's records too: copy back only the seeds that have no record.json here.
# Meant for the lent machine only: at the end it stops every `rensenet train` process on it.
# PLAN: ';'-separated "TASKS:MODELS:JOBS:PARALLEL", run at the same time (MODELS empty: every model), so that a
# few unfinished units of one task need not wait behind a whole other task:
#   PLAN="lung-nodule-ct kidney-stone-ct:densenetblur121d ecm-densenet121:3:3;kidney-ct-slices::6:3" bash benchmarks/gpu_run.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; BUDGET=${BUDGET:-400}; CONFIG=${CONFIG:-benchmarks/full.yaml}
PLAN=${PLAN:-"lung-nodule-ct kidney-stone-ct::8:3"}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
mkdir -p benchdata
for f in .gpu/*/benchdata-*.tar* runs/stash/benchdata-*.tar*; do [ -e "$f" ] && tar xf "$f" -C benchdata; done
[ -e ../shared/data ] || { mkdir -p ../shared && ln -s "$PWD/benchdata" ../shared/data; }
[ -d runs/benchmark ] || { mkdir -p runs && cp -r benchstate runs/benchmark; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

start=$(date +%s); all_tasks=""
IFS=';' read -ra plan <<< "$PLAN"
for g in "${plan[@]}"; do
  IFS=':' read -r tasks models jobs parallel <<< "$g"
  all_tasks="$all_tasks $tasks"
  # shellcheck disable=SC2086  # word splitting of the lists is meant
  timeout -k 10 "$BUDGET" python3 -m rensenet benchmark --config "$CONFIG" --no-cost --no-report \
    --tasks $tasks ${models:+--models $models} --jobs "${jobs:-8}" --parallel-runs "${parallel:-3}" 2>&1 | tail -5 &
done
wait
pkill -f "rensenet train"; sleep 2
echo "benchmark phase: $(( $(date +%s) - start )) s"
dirs="runs/benchmark/logs"; for t in $all_tasks; do dirs="$dirs runs/benchmark/$t runs/benchmark/sweep/$t"; done
# shellcheck disable=SC2046
tar cz --exclude='*.pt' --exclude='*.png' $(ls -d $dirs 2>/dev/null | sort -u) | split -b 15M - "$OUT/bench.tgz.part-"
find runs/benchmark -name record.json | wc -l
ls -la "$OUT"
