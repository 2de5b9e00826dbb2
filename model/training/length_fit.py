"""Fit the length head (core/length_head.py) on training text, measure it on held-out text, save it.

    python -m model.training.length_fit --model assets/a3-smollm2-rs --rows 4000
    python -m model.training.length_fit --model assets/a3-smollm2-rs --rows 4000 --save   # into the checkpoint

The rows are blanks a user makes, drawn from the training split of each corpus (the flagship's
training mix, data/brown and data/austen): half are a whole sentence (the middle one of five,
as model.eval's windows), half a word-aligned span of 1 to 40 tokens anywhere in such a window
(log-uniform length: as many short spans as long ones). The adapter stays frozen: its features
are computed once (core/length_head.length_features), then the head (two outputs per row) is
fitted by L-BFGS on the log-normal likelihood with an L2 penalty, chosen on a tenth of the
training rows held back. The held-out measure (the eval split of each corpus, the same two
kinds of blank) compares the head's median length with the true one, against the best constant
(the training lengths' median): error p10 / p50 / p90 in tokens, the share within 25%, NLL.
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time

import torch

from model.core.length_head import LengthHead, length_features
from model.evaluation.infill_task import make_windows

SPAN_LENGTHS = (1, 40)  # [[?]]'s range (core/infill.UNKNOWN_RANGE)


def word_span(ids: list[int], lo: int, tokenizer, rng: random.Random) -> list[int] | None:
    """A word-aligned span of ids[lo:] (positions), log-uniform in SPAN_LENGTHS, or None."""
    starts = [i for i in range(lo, len(ids) - 1) if tokenizer.decode([ids[i]]).startswith(" ")]
    if not starts:
        return None
    a = rng.choice(starts)
    n = int(round(math.exp(rng.uniform(math.log(SPAN_LENGTHS[0]), math.log(SPAN_LENGTHS[1])))))
    b = min(len(ids) - 1, a + n)  # leave at least one token after the blank
    while b < len(ids) - 1 and not tokenizer.decode([ids[b]]).startswith(" "):
        b += 1  # end where a word starts
    return list(range(a, b)) if b > a else None


def blank_rows(paragraphs: list[str], tokenizer, n: int, seed: int) -> list[tuple[list[int], list[int], str]]:
    """n (ids, blank positions, kind) rows: half sentence blanks, half word spans (module docstring)."""
    rng = random.Random(seed)
    wins = make_windows(paragraphs, tokenizer, n, seed)
    out = []
    for i, w in enumerate(wins):
        if i % 2 == 0:
            out.append((w.input_ids, w.blank, "sentence"))
            continue
        ids = w.reference_sequence()
        span = word_span(ids, 1, tokenizer, rng)
        if span:
            out.append((ids, span, "span"))
    return out


L2 = (1.0, 3.0, 10.0, 30.0)  # the penalties tried on the weights (the loss is a mean over rows)


def fit(feats: torch.Tensor, lengths: torch.Tensor, l2: tuple[float, ...] = L2, seed: int = 0,
        max_iter: int = 300) -> tuple[LengthHead, dict]:
    """The head fitted by L-BFGS on 90% of the rows with each L2 penalty on its weights, the one
    with the best NLL on the other 10% kept; (head, log). Without the penalty it overfits at once:
    1728 features, a few thousand rows, and a sigma it can shrink on every training row."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(feats), generator=g)
    n_val = max(1, len(feats) // 10)
    val, tr = order[:n_val], order[n_val:]
    logs = lengths[tr].float().log()
    tried, best = {}, None
    for lam in l2:
        head = LengthHead(feats.shape[1])
        head.mean.copy_(feats[tr].mean(0))
        head.std.copy_(feats[tr].std(0).clamp_min(1e-4))
        with torch.no_grad():  # start at the constant log-normal of the training lengths
            head.linear.weight.zero_()
            head.linear.bias.copy_(torch.tensor([logs.mean(), math.log(math.expm1(max(logs.std().item() - 0.05, 0.01)))]))
        opt = torch.optim.LBFGS(head.linear.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = head.nll(feats[tr], lengths[tr]) + lam * (head.linear.weight ** 2).sum()
            loss.backward()
            return loss
        opt.step(closure)
        with torch.no_grad():
            tried[lam] = head.nll(feats[val], lengths[val]).item()
        if best is None or tried[lam] < tried[best[0]]:
            best = (lam, head.eval())
    return best[1], {"l2": best[0], "val_nll": tried, "train_rows": len(tr), "val_rows": n_val}


def measure(head: LengthHead, feats: torch.Tensor, lengths: torch.Tensor, constant: float) -> dict:
    """The head's median against the true length, and a constant median, on held-out rows."""
    with torch.no_grad():
        mu, _ = head(feats)
        nll = head.nll(feats, lengths).item()
    def stats(pred: torch.Tensor) -> dict:
        err = sorted((pred.round() - lengths.float()).tolist())
        q = lambda p: err[min(len(err) - 1, int(p * len(err)))]  # noqa: E731
        within = ((pred.round() - lengths.float()).abs() <= 0.25 * lengths.float()).float().mean().item()
        abs_err = statistics.median(abs(e) for e in err)
        return {"err": (q(0.1), q(0.5), q(0.9)), "abs_p50": abs_err, "within_25": within}
    return {"rows": len(lengths), "nll": nll, "head": stats(mu.exp()),
            "constant": stats(torch.full_like(mu, constant))}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m model.training.length_fit", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="assets/a3-smollm2-rs", help="A3 checkpoint (adapter or full)")
    p.add_argument("--data", default="data/brown,data/austen", help="prepared corpora (train.txt and eval.txt each)")
    p.add_argument("--rows", type=int, default=2000, help="training rows per corpus")
    p.add_argument("--eval-rows", type=int, default=300, help="held-out rows per corpus")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--save", action="store_true", help="write length_head.safetensors into --model")
    p.add_argument("--cache", default=None, help="save / reuse the computed features here (a .pt file)")
    args = p.parse_args(argv)
    if args.rows < 20 or args.eval_rows < 10:
        p.error("give --rows >= 20 and --eval-rows >= 10")
    torch.set_num_threads(args.threads)
    from pathlib import Path

    from model.backbones.lora import load_a3
    from model.corpus.austen import load_split

    model, tok = load_a3(args.model)
    model.eval()
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        data = torch.load(cache)
    else:
        data = {}
        for split, n in (("train", args.rows), ("eval", args.eval_rows)):
            for d in args.data.split(","):
                rows = blank_rows(load_split(d, split), tok, n, seed=1 if split == "train" else 2)
                t0 = time.perf_counter()
                feats = length_features(model, [(ids, blank) for ids, blank, _ in rows])
                print(f"{d} {split}: {len(rows)} rows, features in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
                data[f"{d}:{split}"] = {"feats": feats, "lengths": torch.tensor([len(b) for _, b, _ in rows]),
                                        "kinds": [k for *_, k in rows]}
        if cache is not None:
            torch.save(data, cache)
    train = [v for k, v in data.items() if k.endswith(":train")]
    feats = torch.cat([v["feats"] for v in train])
    lengths = torch.cat([v["lengths"] for v in train])
    head, log = fit(feats, lengths)
    constant = float(lengths.float().median())
    print(f"fit: {log}; constant median {constant:.0f} tokens")
    for k, v in data.items():
        if not k.endswith(":eval"):
            continue
        for kind in ("sentence", "span"):
            keep = torch.tensor([x == kind for x in v["kinds"]])
            m = measure(head, v["feats"][keep], v["lengths"][keep], constant)
            print(f"{k} {kind}s: {m}")
    if args.save:
        print(f"saved {head.save(args.model)}")


if __name__ == "__main__":
    main()
