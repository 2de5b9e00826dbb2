#!/usr/bin/env bash
# GPU session, run 3 of 3: what did not fit in run 2's files: the best variant's diffusion
# baseline (from long's base) and the runner-up's A3 model (and base, when it has its own).
set -u
P=${A3_GPU_DIR:-/root/a3gpu}
cd "$P/repo" || exit 1
best=$(sed -n 1p runs/ranking.txt | cut -d' ' -f1)
second=$(sed -n 2p runs/ranking.txt | cut -d' ' -f1)
d=runs/gpu-long-diffusion/final; [ -d "$d" ] || d=runs/gpu-long-diffusion/last
[ -d "$d" ] && tar cf - --exclude=trainer_state.pt "$d" runs/gpu-long-diffusion/metrics.jsonl runs/gpu-long-diffusion.log \
  | split -b 15M -d - "$OUT/diffusion.tar.part"
# the runner-up's A3 model, and its base when that differs from the best's
extra=""; [ "$(cat "runs/gpu-$second.base" 2>/dev/null)" != "$(cat "runs/gpu-$best.base")" ] && extra=$(cat "runs/gpu-$second.base" 2>/dev/null)
[ -n "$second" ] && [ -d "runs/gpu-$second/final" ] && tar cf - "runs/gpu-$second/final" $extra \
  | split -b 15M -d - "$OUT/second.tar.part"
ls -la "$OUT"; echo phase3 done
