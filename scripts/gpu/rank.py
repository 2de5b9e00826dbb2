"""Rank the GPU recipe variants by their card metrics: first those whose A3 keeps the base's
left-to-right NLL within 5%, each group by infilling gain (largest first).

    python scripts/gpu/rank.py runs        # reads runs/gpu-KEY-metrics.json; prints "KEY gain ar_vs_base"
"""
import json
import sys
from pathlib import Path


def main(run_dir: str) -> None:
    rows = []
    for f in sorted(Path(run_dir).glob("gpu-*-metrics.json")):
        m = json.loads(f.read_text())
        key = f.name[len("gpu-"):-len("-metrics.json")]
        rows.append((m["a3_ar_vs_base"] > 0.05, -m["infill_gain"], key, m))
    for _, _, key, m in sorted(rows):
        print(f"{key} {m['infill_gain']:.4f} {m['a3_ar_vs_base']:.4f} base_ar={m['base_ar']:.3f} "
              f"a3_ar={m['a3_ar']:.3f} infill={m['infill_a3']:.3f}/{m['infill_base_left']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs")
