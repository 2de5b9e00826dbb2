"""Time one training step of an A3 adapter on this machine: fp32 vs bf16 autocast, 1 vs 2 threads,
the query stream at every position vs at the scored blanks only (score_first false).

    python scripts/train_speed.py --adapter assets/a3-smollm2-mix --seq-len 128 --batch 8

Each setting: forward + backward + AdamW step on the same rows and groupings, `--repeats` timed
steps after one warm-up; prints median seconds per step and tokens/s (rows x seq_len per step),
and writes a markdown table with --out. The CPU's bf16 / VNNI / AMX flags are printed first:
bf16 autocast pays off only where the CPU has AVX-512 BF16 or AMX.
"""
from __future__ import annotations

import argparse
import itertools
import random
import statistics
import subprocess
import time
from pathlib import Path

import torch

from model.backbones.lora import load_adapter
from model.core.samplers import make_sampler
from model.training.steps import grouping_batch, stage_loss


def cpu_flags() -> str:
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("Model name")), "?")
    have = [f for f in ("avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile") if f in flags]
    return f"{name}; {' '.join(have) or 'no bf16/VNNI/AMX flags'}"


def time_steps(model, ids, g, score_first: bool, bf16: bool, repeats: int) -> float:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = stage_loss(model, ids, g, score_first)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", default="assets/a3-smollm2-mix", help="adapter checkpoint to train")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per row, BOS included")
    p.add_argument("--batch", type=int, default=8, help="rows per step")
    p.add_argument("--sampler", default="user:3-24", help="grouping sampler of the timed batches")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per setting (median)")
    p.add_argument("--threads", default="1,2", help="thread counts to try")
    p.add_argument("--out", help="write the table (markdown) here")
    a = p.parse_args(argv)
    print("CPU:", cpu_flags())
    model = load_adapter(a.adapter, merge=False).train()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 40000, (a.batch, a.seq_len), generator=gen)
    ids[:, 0] = 1
    g = grouping_batch(make_sampler(a.sampler), a.batch, a.seq_len, random.Random(0))
    rows = []
    for threads, bf16, score_first in itertools.product([int(t) for t in a.threads.split(",")], (False, True),
                                                         (True, False)):
        torch.set_num_threads(threads)
        s = time_steps(model, ids, g, score_first, bf16, a.repeats)
        rows.append((threads, "bf16 autocast" if bf16 else "fp32", "every position" if score_first else "blanks only",
                     s, a.batch * a.seq_len / s))
        print(f"threads {threads}  {rows[-1][1]:13s}  queries at {rows[-1][2]:14s}  {s:6.2f} s/step  "
              f"{rows[-1][4]:6.0f} tokens/s", flush=True)
    if a.out:
        lines = [f"CPU: {cpu_flags()}; {a.batch} x {a.seq_len} tokens a step, sampler `{a.sampler}`, median of "
                 f"{a.repeats}", "", "| threads | precision | query rows | s/step | tokens/s |", "|---|---|---|---|---|"]
        lines += [f"| {t} | {pr} | {q} | {s:.2f} | {tps:.0f} |" for t, pr, q, s, tps in rows]
        Path(a.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
