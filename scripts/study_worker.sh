#!/usr/bin/env bash
# One worker of a recipe study: train each named recipe of configs/experiments/right_side/ on one
# thread (resumable: rerunning continues), then its per-domain right-side metrics.
#   nohup bash scripts/study_worker.sh user user_lr > ~/.cache/a3-studio/runs/worker-a.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-$HOME/.cache/a3-studio/runs}
export OMP_NUM_THREADS=${THREADS:-1} TOKENIZERS_PARALLELISM=false
for name in "$@"; do
  out="$RUNS/rs-$name"
  if [ ! -f "$out/final/adapter.safetensors" ]; then
    python -m model.train --config "configs/experiments/right_side/$name.json" --out "$out" \
      ${MAX_SECONDS:+--max-seconds $MAX_SECONDS} || { echo "train $name failed"; continue; }
  fi
  [ -f "$out/final/adapter.safetensors" ] || { echo "$name stopped on time; rerun to resume"; exit 0; }
  [ -f "$out/domains/domains.json" ] || python -m model.metrics --domains --base smollm2-135m-gguf \
      --model "$out/final" --rows 8 --austen-rows 32 --parts ar,right --out "$out/domains"
done
