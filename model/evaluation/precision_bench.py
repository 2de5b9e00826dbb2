"""The flagship at reading speed on a CPU: each inference precision and thread count, timed against
the memory-bandwidth limit, and checked against fp32 (`python -m model.bench --cpu-precision`).

    python -m model.bench --cpu-precision --model assets/a3-smollm2-rs --out docs/bench/cpu-precision.md

For each precision (backbones/precision.py) and each thread count, on one ~100-token story:
  - tokens/s at group size 1 and 4 (a 40-token blank, left to right, greedy; median of repeats);
  - the wall time to fill a 10-token blank (encoding the story included), the same fill again
    with the story kept (the app's context store, core/context_store.py), and to decode and rank
    8 candidates of it (the orders pool, core/candidates: what the app does for "8 candidates",
    scored as the app scores them on a CPU: without the text after the blank, which the shipped
    known-length rule does not read, and given both sides for the winner only, which it shows);
  - the time of one cached step at group size 1 against its limit, weight bytes read per step
    (precision.weight_bytes) over the memory bandwidth measured in the same run (a STREAM-like
    copy of 512 MiB, bytes read + written, same threads): the ratio says how close the step is to
    the hardware.
Then, once per precision, agreement with fp32 on held-out rows (Brown genres and Austen, one
5-20-token span per row scored left to right with both sides, as the card's metrics): the share
of positions where the precision's most likely token is fp32's (teacher-forced: both read the same
text), the span NLL's relative change, and the largest change of a token probability the app shows
(the true token's and fp32's top token's).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import torch

from model.backbones.lora import load_a3
from model.backbones.precision import PRECISIONS, apply_precision, weight_bytes
from model.core.candidates import (SHIPPED_RULE, make_candidates, needs_both, needs_right, pool_configs, rank,
                                   with_both)
from model.core.context_store import enable_context_store
from model.core.decode import DecodeConfig, run
from model.core.groups import group_ids_from_order

STORY = ("The rain had stopped by the time we reached the station, and the platform was empty except for an "
         "old man with a dog. He looked up as we came in and said nothing at all, which seemed strange to me "
         "then. We sat on the bench and waited for the last train of the night to take us home, and neither "
         "of us said a word until we heard it coming through the trees.")


def bandwidth(threads: int, mib: int = 512, repeats: int = 5) -> float:
    """GB/s of a large copy (read + write bytes), best of `repeats`, on `threads` threads."""
    torch.set_num_threads(threads)
    a = torch.ones(mib * 2 ** 20 // 4)
    b = torch.empty_like(a)
    b.copy_(a)
    best = min(_timed(lambda: b.copy_(a)) for _ in range(repeats))
    return 2 * a.numel() * 4 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def story_request(tok, blank: int, at: int = 30):
    ids = [tok.bos_token_id] + tok.encode(STORY)
    mask = [False] * len(ids)
    mask[at:at + blank] = [True] * blank
    return ids, mask


def speed(model, tok, threads: int, repeats: int) -> dict:
    """Tokens/s at group size 1 and 4, the 10-token fill (and again, its story kept: the app's
    context store), the 8 ranked candidates, per step ms."""
    torch.set_num_threads(threads)
    out = {}
    ids40, mask40 = story_request(tok, 40)
    for g in (1, 4):
        cfg = DecodeConfig(group_size=g)
        run(model, ids40, mask40, cfg, tok)  # warm-up
        secs = statistics.median(_timed(lambda: run(model, ids40, mask40, cfg, tok)) for _ in range(repeats))
        out[f"tok_s_g{g}"] = 40 / secs
    # one cached step at group size 1: the 40-token run's time less its 10-token twin's, per step
    ids10, mask10 = story_request(tok, 10)
    t10 = statistics.median(_timed(lambda: run(model, ids10, mask10, DecodeConfig(), tok)) for _ in range(repeats))
    t40 = 40 / out["tok_s_g1"]
    out["step_ms"] = 1000 * (t40 - t10) / 30
    out["fill10_s"] = t10
    enable_context_store(model)  # as the app keeps a story it has encoded: the same fill again
    run(model, ids10, mask10, DecodeConfig(), tok)
    out["again10_s"] = statistics.median(_timed(lambda: run(model, ids10, mask10, DecodeConfig(), tok))
                                         for _ in range(repeats))
    object.__setattr__(model, "context_store", None)
    req = [(ids10, mask10, None, 10)]

    def ranked():  # as the app ranks: the scores the rule reads, then both sides for the fill it shows
        cands = make_candidates(model, req, pool_configs("orders", 8), tok, right=needs_right(SHIPPED_RULE),
                                both=needs_both(SHIPPED_RULE))
        return with_both(model, rank(cands, SHIPPED_RULE)[0])
    ranked()
    out["rank8_s"] = statistics.median(_timed(ranked) for _ in range(repeats))
    return out


@torch.no_grad()
def agreement(ref, model, rows: torch.Tensor, seed: int = 0) -> dict:
    """Teacher-forced agreement with fp32 over one 5-20-token span per row (module docstring)."""
    rng = random.Random(seed)
    T = rows.shape[1]
    same = n = 0
    nll_r = nll_q = dp = 0.0
    for i in range(len(rows)):
        L = rng.randint(5, 20)
        a = rng.randint(T // 4, 3 * T // 4 - L)
        span = list(range(a, a + L))
        g = group_ids_from_order(T, [p for p in range(T) if p not in span], [[p] for p in span])[None]
        pos = torch.tensor(span)[None]
        lr = torch.log_softmax(ref(rows[i:i + 1], g, query_positions=pos).logits.float(), -1)[0]  # (L, V)
        lq = torch.log_softmax(model(rows[i:i + 1], g, query_positions=pos).logits.float(), -1)[0]
        top, tgt = lr.argmax(-1, keepdim=True), rows[i, span, None]
        same += int((lq.argmax(-1, keepdim=True) == top).sum())
        n += L
        nll_r -= lr.gather(1, tgt).sum().item()
        nll_q -= lq.gather(1, tgt).sum().item()
        for idx in (top, tgt):
            dp = max(dp, (lr.gather(1, idx).exp() - lq.gather(1, idx).exp()).abs().max().item())
    return {"agree": same / n, "nll_change": nll_q / nll_r - 1, "max_dp": dp, "tokens": n}


def cpu_precision_report(path: str, precisions=PRECISIONS, threads=(1, 2), repeats: int = 5, rows: int = 4,
                         log=print) -> str:
    """Run everything (module docstring) and return the markdown report."""
    from model.evaluation.bench_report import machine_info
    from model.evaluation.domains import domain_rows
    ref, tok = load_a3(path)
    held = domain_rows(tok, 256, rows)
    eval_rows = torch.cat([held["brown (all genres)"], held["austen"]])
    bw = {t: bandwidth(t) for t in threads}
    log(f"bandwidth: {bw}")
    lines = [f"# `{path}` on this CPU: precisions, threads and the bandwidth limit", "",
             f"Machine: {machine_info('cpu')}. Generated by `python -m model.bench --cpu-precision --model {path}`.", "",
             "| precision | threads | weight MB / step | copy GB/s | step ms (g=1) | limit ms | ratio | tokens/s g=1 | "
             "tokens/s g=4 | 10-token fill s | the same fill again s | 8 ranked candidates s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    agree_lines = ["", "Agreement with fp32 (teacher-forced, held-out rows: "
                   f"{rows} per Brown genre and {rows} of Austen, one 5-20-token span each):", "",
                   "| precision | top token as fp32 | span NLL vs fp32 | largest probability change |", "|---|---:|---:|---:|"]
    for p in precisions:
        model = apply_precision(load_a3(path)[0], p)
        wb = weight_bytes(model)
        for t in threads:
            s = speed(model, tok, t, repeats)
            limit = wb / (bw[t] * 1e9) * 1000
            lines.append(f"| {p} | {t} | {wb / 1e6:.0f} | {bw[t]:.1f} | {s['step_ms']:.1f} | {limit:.1f} | "
                         f"{s['step_ms'] / limit:.2f} | {s['tok_s_g1']:.1f} | {s['tok_s_g4']:.1f} | "
                         f"{s['fill10_s']:.2f} | {s['again10_s']:.2f} | {s['rank8_s']:.2f} |")
            log(lines[-1])
        if p != "fp32":
            torch.set_num_threads(max(threads))
            a = agreement(ref, model, eval_rows)
            agree_lines.append(f"| {p} | {a['agree']:.1%} of {a['tokens']} | {a['nll_change']:+.2%} | {a['max_dp']:.3f} |")
            log(agree_lines[-1])
        del model
    return "\n".join(lines + agree_lines) + "\n"


def main(argv: list[str]) -> str:
    """`python -m model.bench --cpu-precision ...` (model/evaluation/benchmark.py hands it over)."""
    p = argparse.ArgumentParser(prog="python -m model.bench --cpu-precision",
                                description="a checkpoint's CPU precisions and threads against the bandwidth limit")
    p.add_argument("--cpu-precision", action="store_true", help="(this report)")
    p.add_argument("--model", required=True, help="A3 checkpoint (full or adapter)")
    p.add_argument("--precisions", default="fp32,bf16w,bf16,int8", help="comma-separated, of backbones/precision.py")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    p.add_argument("--rows", type=int, default=4, help="held-out rows per Brown genre (and of Austen) for agreement")
    p.add_argument("--out", help="also write the markdown report here")
    a = p.parse_args(argv)
    text = cpu_precision_report(a.model, tuple(a.precisions.split(",")), tuple(int(t) for t in a.threads.split(",")),
                                a.repeats, a.rows, log=lambda s: print(s, file=sys.stderr))
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return text
