"""Which fill to keep: candidate pools, ranking rules and chosen lengths, measured on held-out windows.

    python -m model.fills --model assets/a3-austen-tiny --windows 500 --work runs/fills-tiny --out docs/fills
    python -m model.fills --model assets/a3-smollm2-lora --windows 150 --work runs/fills-smollm2 --out docs/fills
    python -m model.fills --plot docs/fills/fills-*.json --out docs/fills        # the README's plot

The windows are model.eval's (five sentences of held-out Austen, the middle one blanked; see
infill_task.py), made with the model's own tokenizer. Per window, three batched decodes:

  orders    the 8 members of the "orders" pool (core/candidates.py), greedy, the true length
  samples   greedy left to right + 7 samples at temperature 0.8, the true length
  lengths   the true length hidden: greedy left to right and outside-in (groups of 4) at each length
            of length_grid(1, 2 x the mean reference length), the range a `[[?]]` blank gets
  signal    (a checkpoint with a learned length signal) the true length hidden: one blank of as
            many slots as the grid's longest length (at most the checkpoint's max_slots), the first
            4 members of the "orders" pool, each ending its fill where the model writes the empty
            token (core/chosen_length.py)

`--pools` runs some of them: `greedy,signal` (greedy = the orders pool's first member alone, every
rule's baseline) measures a length signal against greedy at the true length, a fraction of the cost.

Every candidate is scored (core/scoring.score_fills) and its ROUGE-L against the reference
recorded, one JSON line per window in WORK/records.jsonl (resumable). The report
(fills_report.py) ranks the candidates with every rule on the same records.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from model.core.candidates import length_grid, length_requests, make_candidates, pool_configs, slack_configs
from model.core.chosen_length import length_signal
from model.core.decode import DecodeConfig
from model.core.length_head import LengthHead, choose_length, length_features
from model.core.sampling import SamplingConfig

from .infill_task import Window, make_windows

LENGTH_CONFIGS = [("left to right", DecodeConfig()), ("outside in, groups of 4", DecodeConfig(strategy="outside_in", group_size=4))]


def candidate_records(kind: str, cands, scorer, reference: str, tokenizer) -> list[dict]:
    """One JSON-ready dict per candidate: its fill (ids and text), ROUGE-L x 100 against the
    reference, its FillScores and forward passes (what the report ranks, with core.candidates.rank)."""
    out = []
    for c in cands:
        text = tokenizer.decode(c.fill_ids, skip_special_tokens=True).strip()
        out.append({"kind": kind, "label": c.label, "length": c.length, "hyp": text,
                    "rougeL": 100 * scorer.score(reference, text)["rougeL"].fmeasure, "fill_ids": c.fill_ids,
                    **asdict(c.scores), "passes": c.trace.forward_passes})
    return out


POOLS = ("orders", "samples", "lengths", "signal", "greedy")  # greedy: the orders pool's first member only


def study_window(model, tokenizer, win: Window, scorer, grid: list[int], seed: int,
                 pools: tuple[str, ...] = POOLS) -> dict:
    """The batched decodes of one window (three, four with a length signal; those of `pools`),
    every candidate scored and compared with the reference."""
    L = len(win.blank)
    rec = {"window": win.index, "true_length": L, "reference": win.reference, "candidates": [], "seconds": {}}
    at = lambda lengths: length_requests(win.input_ids, win.blank_mask(), [win.blank], lengths)  # noqa: E731
    n_orders = 1 if "greedy" in pools else 8  # recorded as the orders pool either way
    kinds = {"orders" if k == "greedy" else k for k in pools}
    jobs = [("orders", at([L]), pool_configs("orders", n_orders, seed)), ("samples", at([L]), pool_configs("samples", 8, seed)),
            ("lengths", at(grid),
             [(lab, DecodeConfig(**{**vars(c), "sampling": SamplingConfig(seed=seed)})) for lab, c in LENGTH_CONFIGS])]
    signal = length_signal(model)
    if signal:  # one request of M slots; every member ends its own fill
        M = min(max(grid), signal["max_slots"])
        jobs.append(("signal", at([M]), slack_configs(pool_configs("orders", 4, seed), win.blank[0], M, 1)))
    for kind, reqs, cfgs in (j for j in jobs if j[0] in kinds):
        t0 = time.perf_counter()
        cands = make_candidates(model, reqs, cfgs, tokenizer)
        secs = time.perf_counter() - t0
        rec["seconds"][kind] = secs
        rec["candidates"] += candidate_records(kind, cands, scorer, win.reference, tokenizer)
    return rec


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m model.fills", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="assets/a3-austen-tiny", help="A3 checkpoint (full or adapter)")
    p.add_argument("--data", default="data/austen", help="prepared corpus with eval.txt (python -m model.data prepare)")
    p.add_argument("--windows", type=int, default=500, help="windows to run (the first N of model.eval's shuffle)")
    p.add_argument("--subset-seed", type=int, default=None,
                   help="run --windows windows of a seeded shuffle of the 500, in that order (a slow model on a "
                        "CPU: stopped early, it has run a random subset; --report-only reports what ran)")
    p.add_argument("--seed", type=int, default=0, help="window shuffle and sampling seed")
    p.add_argument("--work", default="runs/fills", help="records.jsonl lives here (resumable)")
    p.add_argument("--out", default="docs/fills", help="report directory")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--pools", default="orders,samples,lengths,signal",
                   help="comma-separated pools to run, orders or greedy among them (greedy: the orders pool's "
                        "first member alone, every rule's baseline); greedy,signal measures a learned length "
                        "signal at a fraction of the full study's cost")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the records, run nothing")
    p.add_argument("--skip", type=int, default=0,
                   help="run from the K-th window of the order on (a second worker on another core, with its own "
                        "--work; concatenate the records.jsonl files and --report-only reports both)")
    p.add_argument("--head-weights", default=None,
                   help="comma-separated weights of the length head's log prior to report (a checkpoint with "
                        "length_head.safetensors; default: fills_report.HEAD_WEIGHTS)")
    p.add_argument("--plot", nargs="+", metavar="JSON", help="only draw OUT/fills.png from these reports' "
                   "fills-<model>.json tables (one block per model)")
    args = p.parse_args(argv)
    if args.plot:
        from .fills_report import plot
        tables = {Path(j).stem.removeprefix("fills-"): json.loads(Path(j).read_text()) for j in args.plot}
        print(plot(tables, Path(args.out) / "fills.png"))
        return
    if args.windows < 1:
        p.error("--windows must be at least 1")
    if not 0 <= args.skip < args.windows:
        p.error(f"--skip must be from 0 to --windows - 1 ({args.windows - 1}); got {args.skip}")
    try:
        args.head_weights = [float(x) for x in args.head_weights.split(",")] if args.head_weights else None
    except ValueError:
        p.error(f"--head-weights must be numbers separated by commas; got {args.head_weights!r}")
    pools = tuple(x.strip() for x in args.pools.split(",") if x.strip())
    if unknown := set(pools) - set(POOLS):
        p.error(f"--pools: unknown pool(s) {sorted(unknown)}; choose from {', '.join(POOLS)}")
    if ("orders" in pools) == ("greedy" in pools):
        p.error("--pools must include one of orders or greedy: its greedy left-to-right member is every "
                "rule's baseline")
    torch.set_num_threads(args.threads)
    from rouge_score.rouge_scorer import RougeScorer

    from model.backbones.lora import load_a3
    from model.corpus.austen import load_split

    from .fills_report import write_report
    model, tok = load_a3(args.model)
    pool = make_windows(load_split(args.data, "eval"), tok, 500, args.seed)
    typical = round(sum(len(w.blank) for w in pool) / len(pool))  # over all 500, whatever the subset
    if args.subset_seed is not None:
        import random
        # a seeded shuffle, run in its order: a study stopped early has still run a random subset
        pool = random.Random(args.subset_seed).sample(pool, len(pool))
    windows = pool[:args.windows]
    todo_from = windows[args.skip:]  # a second worker on another core starts further down the order
    grid = length_grid(1, 2 * typical, 9)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "records.jsonl"
    done = {json.loads(line)["window"] for line in path.read_text().splitlines()} if path.is_file() else set()
    scorer = RougeScorer(["rougeL"], use_stemmer=True)
    t_start = time.time()
    todo = [w for w in todo_from if w.index not in done] if not args.report_only else []
    with open(path, "a") as f:
        for n, w in enumerate(todo):
            f.write(json.dumps(study_window(model, tok, w, scorer, grid, args.seed, pools)) + "\n")
            f.flush()
            if (n + 1) % 10 == 0:
                left = (time.time() - t_start) / (n + 1) * (len(todo) - n - 1) / 60
                print(f"{n + 1}/{len(todo)} windows, {left:.0f} min left", file=sys.stderr)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    keep = {w.index for w in windows}
    records = [r for r in records if r["window"] in keep]
    head = LengthHead.load(args.model)
    if head is not None:  # each window's log p_head(L) at the grid's lengths (fills_report.head_rows)
        by = {w.index: w for w in windows}
        feats = length_features(model, [(by[r["window"]].input_ids, by[r["window"]].blank) for r in records])
        for r, f in zip(records, feats):
            chosen = choose_length(head, f[None], grid)  # the app's choice, and the head's log p(L)
            r["head_prior"] = {str(n): v for n, v in chosen["log_p"].items()}
            r["head_length"] = chosen["length"]
    given = " ".join(argv if argv is not None else sys.argv[1:])
    print(write_report(records, args, grid, f"python -m model.fills {given}"))


if __name__ == "__main__":
    main()
