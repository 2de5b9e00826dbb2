"""A long training campaign in resumable chunks, with the held-out right-side curve and snapshots.

    nohup python scripts/long_run.py --config configs/smollm2_a3_rs.json \\
        --out ~/.cache/a3-studio/runs/a3-smollm2-rs --chunk-minutes 60 --hours 6 > long.log 2>&1 &

Each chunk runs `python -m model.train --config C --out OUT --max-seconds S` (it resumes from
OUT/last), then measures OUT/last on the held-out rows of the per-domain table with only its
left-to-right and right-side parts (`python -m model.metrics --domains --parts ar,right`, fp32,
one row per line of OUT/curve.jsonl: tokens, seconds, Brown and Austen right-side gains (all
tokens, last two), Brown left-to-right vs the base; with a length signal, its teacher-forced end
hazard, `python -m model.evaluation.end_signal`: end_p, before_p, end_top, greedy_ends, l2r_empty). Each
chunk's adapter is kept in OUT/eval/tokens-N/adapter/. When the mean of the Brown and Austen gains
over all tokens improves and Brown left-to-right stays within --max-forgetting of the base,
OUT/best/ gets a copy of the adapter (commit it to assets/ from there: it is what `init_adapter`
continues from on a fresh machine). The campaign stops after --hours of
training, when the recipe is finished, or when the gain has not improved for --flat-hours.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ADAPTER_FILES = ("adapter.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def progress(out: Path) -> dict:
    path = out / "last" / "progress.json"
    return json.loads(path.read_text()) if path.is_file() else {"tokens": 0, "elapsed": 0.0}


def copy_adapter(src: Path, dest: Path) -> None:
    """The adapter's files of checkpoint folder src into dest (made if missing)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ADAPTER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)


def measure(out: Path, rows: int, austen_rows: int, threads: int) -> dict:
    """The right-side and left-to-right numbers of OUT/last on the study's held-out rows."""
    dest = out / "eval" / f"tokens-{progress(out)['tokens']}"
    if not (dest / "domains.json").is_file():
        subprocess.run([sys.executable, "-m", "model.metrics", "--domains", "--base", "smollm2-135m-gguf",
                        "--model", str(out / "last"), "--rows", str(rows), "--austen-rows", str(austen_rows),
                        "--parts", "ar,right", "--out", str(dest)], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if not (dest / "adapter").is_dir():  # this chunk's adapter, to measure or ship later
        copy_adapter(out / "last", dest / "adapter")
    signal = {}
    if json.loads((out / "last" / "config.json").read_text()).get("a3", {}).get("length_signal"):
        if not (dest / "end_signal.json").is_file():
            subprocess.run([sys.executable, "-m", "model.evaluation.end_signal", "--model", str(out / "last"),
                            "--rows", "30", "--threads", str(threads), "--out", str(dest / "end_signal.json")],
                           check=True)
        sig = json.loads((dest / "end_signal.json").read_text())
        signal = {k: sig[k] for k in ("end_p", "before_p", "end_top", "greedy_ends", "l2r_empty") if k in sig}
    res = json.loads((dest / "domains.json").read_text())
    model = next(k for k in res["austen"] if k != "base")
    b, a = res["brown (all genres)"], res["austen"]
    return {"brown_gain": b[model]["right_gain"], "brown_gain_last2": b[model]["right_gain_last2"],
            "austen_gain": a[model]["right_gain"], "austen_gain_last2": a[model]["right_gain_last2"],
            "brown_l2r_vs_base": b[model]["a3_ar"] / b["base"]["base_ar"] - 1, **signal}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the training recipe (JSON)")
    p.add_argument("--out", required=True, help="the run folder (outside the work tree)")
    p.add_argument("--chunk-minutes", type=float, default=60, help="training minutes between measurements")
    p.add_argument("--hours", type=float, default=6, help="training hours of this campaign in all (this process)")
    p.add_argument("--flat-hours", type=float, default=2, help="stop when the gain has not improved for this long")
    p.add_argument("--rows", type=int, default=8, help="held-out rows per Brown genre")
    p.add_argument("--austen-rows", type=int, default=32, help="held-out Austen rows")
    p.add_argument("--max-forgetting", type=float, default=0.02,
                   help="a snapshot is kept as best only if Brown left-to-right NLL is at most this much above the base's")
    p.add_argument("--threads", type=int, default=2, help="threads for training and measuring")
    a = p.parse_args(argv)
    out = Path(a.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    curve = out / "curve.jsonl"
    points = [json.loads(x) for x in curve.read_text().splitlines()] if curve.is_file() else []
    kept = [pt for pt in points if pt["brown_l2r_vs_base"] <= a.max_forgetting]
    best = max((pt["score"] for pt in kept), default=float("-inf"))
    best_at = max((pt["elapsed"] for pt in points if pt["score"] == best), default=0.0)
    start = time.time()
    while (time.time() - start) / 3600 < a.hours:
        before = progress(out)
        proc = subprocess.run([sys.executable, "-m", "model.train", "--config", a.config, "--out", str(out),
                               "--max-seconds", str(60 * a.chunk_minutes)],
                              env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
        if proc.returncode:
            raise SystemExit(f"training failed ({proc.returncode}); see the log")
        prog = progress(out)
        if prog["tokens"] == before["tokens"]:
            print("the recipe is finished", flush=True)
            break
        m = measure(out, a.rows, a.austen_rows, a.threads)
        score = (m["brown_gain"] + m["austen_gain"]) / 2
        pt = {"tokens": prog["tokens"], "elapsed": prog["elapsed"], "step": prog["step"], **m, "score": score}
        with curve.open("a") as f:
            f.write(json.dumps(pt) + "\n")
        print(json.dumps(pt), flush=True)
        if score > best and pt["brown_l2r_vs_base"] <= a.max_forgetting:
            best, best_at = score, prog["elapsed"]
            shutil.rmtree(out / "best.tmp", ignore_errors=True)
            copy_adapter(out / "last", out / "best.tmp")
            (out / "best.tmp" / "point.json").write_text(json.dumps(pt, indent=1) + "\n")
            shutil.rmtree(out / "best", ignore_errors=True)
            (out / "best.tmp").rename(out / "best")
        elif (prog["elapsed"] - best_at) / 3600 >= a.flat_hours:
            print(f"no improvement for {a.flat_hours} h of training: stopping", flush=True)
            break


if __name__ == "__main__":
    main()
