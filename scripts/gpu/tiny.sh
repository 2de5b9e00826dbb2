#!/usr/bin/env bash
# The tiny-model recipe variants on a GPU, fp32 (scripts/gpu/phase1.sh starts this in the background):
#   long         configs/gpu/austen_long.json: stage 0 3000 steps, stages 1-3 4850 steps (mix)
#   long_infill  the same stage 0 (long's base, reused), stages 1-3 with mix:0.7
#   stage3       configs/gpu/austen_stage3.json: the shipped stage 0 (700), stage 3 5500 steps
#   diffusion    the masked-diffusion baseline from long's base, 4850 steps (equal budget)
# Each A3 run is measured with model.metrics when it ends; runs/gpu-KEY.base names its base.
#   bash scripts/gpu/tiny.sh [MAX_SECONDS]
set -u
secs=${1:-450}
scale=${A3_STEPS_SCALE:-1}
dev=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
mkdir -p runs
train() {  # KEY CONFIG [extra args]: train, then measure against the base it names
  local key=$1 cfg=$2; shift 2
  python3 -m model.train --config "$cfg" --mixed-precision no --max-seconds "$secs" --steps-scale "$scale" "$@" \
    > "runs/gpu-$key.log" 2>&1
  local base; base=$(cat "runs/gpu-$key.base")
  if [ -d "runs/gpu-$key/final" ]; then
    python3 -m model.metrics --model "runs/gpu-$key/final" --base "$base" --device "$dev" \
      --json "runs/gpu-$key-metrics.json" > "runs/gpu-$key-metrics.log" 2>&1
  fi
  echo "$key done"
}
echo runs/gpu-long/base > runs/gpu-long.base
echo runs/gpu-long/base > runs/gpu-long_infill.base
echo runs/gpu-stage3/base > runs/gpu-stage3.base
train long configs/gpu/austen_long.json &
long_pid=$!
train stage3 configs/gpu/austen_stage3.json &
until [ -f runs/gpu-long/base/tokenizer_config.json ] || ! kill -0 "$long_pid" 2>/dev/null; do sleep 2; done
sleep 3
if [ -f runs/gpu-long/base/tokenizer_config.json ]; then
  train long_infill configs/gpu/austen_long_infill_from_base.json &
  python3 -m model.train --config configs/gpu/austen_long_diffusion.json --mixed-precision no --max-seconds "$secs" \
    --steps-scale "$scale" > runs/gpu-long-diffusion.log 2>&1 &
fi
wait
echo "all done"
