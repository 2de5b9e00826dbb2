"""Held-out likelihood metrics of an A3 checkpoint against its AR base (the model card's numbers).

    python -m model.metrics --model assets/a3-austen-tiny --base assets/austen-base-tiny
    python -m model.metrics --model assets/a3-smollm2-lora --base smollm2-135m-gguf   # an adapter

On packed rows of the held-out split (BOS + seq_len-1 tokens), all per-token NLL in nats:
- base_ar:            the base causal LM, left to right
- a3_ar:              A3, singleton groups left to right (exact likelihood; target: within 5% of base_ar)
- a3_random:          A3, singleton groups in a random order (exact)
- a3_group{2,4,8}:    A3, contiguous groups of that size left to right (group-factorized)
- infill_a3 / infill_base_left: one blanked span of 5-20 tokens per row; A3 sees both sides (visible
  text = group 0, the span left to right after it: exact for the span), the base only the left side
- right_gain (_first2, _last2): what the text after the span is worth to A3 itself: the same span
  tokens scored by A3 with both sides and by A3 with the row cut after the span (infill_a3_left),
  1 - NLL(both) / NLL(left), over the whole span and over its first and last two tokens
- word_top1_a3 / word_top1_base_left: one single-token word per row; top-1 accuracy of A3 seeing
  both sides vs the base seeing the left side
Everything is seeded, so two runs on the same checkpoint print the same numbers.
"""
from __future__ import annotations

import argparse
import json
import random

import torch
from model.backbones.lora import load_a3, resolve_base
from model.baselines.ar import left_logprobs
from model.core.a3 import A3Model
from model.core.groups import group_ids_from_order
from model.core.samplers import sample_contiguous, sample_random_groups
from model.core.scoring import score_blanks
from model.corpus.austen import load_packed


def _a3_nll(model, rows, grouping, batch: int) -> float:
    tot, n = 0.0, 0
    for i in range(0, len(rows), batch):
        ids = rows[i:i + batch]
        g = torch.stack([grouping(ids.shape[1]) for _ in range(len(ids))]).to(ids.device)
        lp = model.token_logprobs(ids, g)
        tot -= lp[:, 1:].sum().item()
        n += lp[:, 1:].numel()
    return tot / n


def word_positions(tokenizer, row: list[int]) -> list[int]:
    """Positions holding a whole word in one token: ' word' followed by a token starting a new word."""
    text = tokenizer.convert_ids_to_tokens(row)
    out = []
    for i in range(1, len(row) - 1):
        t, nxt = text[i], text[i + 1]
        if t.startswith("Ġ") and t[1:].isalpha() and len(t) > 2 and not nxt[:1].isalpha():
            out.append(i)
    return out


PARTS = ("ar", "random", "groups", "infill", "word", "right")
# per-token NLL sums of the right-side comparison: A3 with both sides vs A3 with the text after the
# span cut off, over the whole span, its first two and its last two tokens
RIGHT_SUMS = tuple(f"infill_a3{side}{part}" for part in ("", "_first2", "_last2") for side in ("", "_left"))


def right_gains(res: dict) -> dict:
    """1 - NLL(both sides) / NLL(left side only) of A3 itself: the share of the span's NLL that the
    text after the span removes, over all span tokens, the first two and the last two."""
    return {f"right_gain{part}": 1 - res[f"infill_a3{part}"] / res[f"infill_a3_left{part}"]
            for part in ("", "_first2", "_last2")}


@torch.no_grad()
def measure_card(model: A3Model | None, base, tokenizer, rows: torch.Tensor, batch: int = 16, seed: int = 0,
                 parts: tuple[str, ...] = PARTS) -> dict:
    """The card's metrics on packed rows (module docstring). model None: the base's numbers only;
    base None: A3's only. `parts` picks metrics; skipped ones still draw their random numbers, so
    the spans and words are the same whatever is measured."""
    for m in (model, base):
        if m is not None:
            m.eval()
    T = rows.shape[1]
    rng = random.Random(seed)
    res = {"rows": len(rows), "seq_len": T}
    if "ar" in parts:
        if base is not None:
            res["base_ar"] = -left_logprobs(base, rows)[:, 1:].mean().item()
        if model is not None:
            res["a3_ar"] = _a3_nll(model, rows, lambda t: torch.arange(t), batch)
    random_order = lambda t: torch.cat([torch.zeros(1, dtype=torch.long), sample_random_groups(t - 1, rng, 1, 1)])  # noqa: E731
    if "random" in parts and model is not None:
        res["a3_random"] = _a3_nll(model, rows, random_order, batch)
    else:
        for _ in range(len(rows)):  # the same draws as when it is measured
            random_order(T)
    if "groups" in parts and model is not None:
        for s in (2, 4, 8):
            res[f"a3_group{s}"] = _a3_nll(model, rows, lambda t, s=s: torch.cat(
                [torch.zeros(1, dtype=torch.long), sample_contiguous(t - 1, rng, s)]), batch)
    # infilling: one span of 5-20 tokens per row, away from the edges
    a3_tot = base_tot = 0.0
    n_tok = 0
    right = {k: 0.0 for k in RIGHT_SUMS}  # the right side's part, A3 against itself
    for i in range(len(rows)):
        L = rng.randint(5, 20)
        start = rng.randint(T // 4, 3 * T // 4 - L)
        if "infill" not in parts and "right" not in parts:
            continue
        span = torch.zeros(T, dtype=torch.bool)
        span[start:start + L] = True
        if model is not None:  # both sides visible, the span left to right
            both = -score_blanks(model, rows[i], span)  # (L,) NLL per span token
            a3_tot += both.sum().item()
            if "right" in parts:  # the same span tokens with the text after the span cut off
                left = -score_blanks(model, rows[i, :start + L], span[:start + L])
                for key, lo, hi in (("", 0, L), ("_first2", 0, 2), ("_last2", L - 2, L)):
                    right["infill_a3" + key] += both[lo:hi].sum().item()
                    right["infill_a3_left" + key] += left[lo:hi].sum().item()
        if base is not None and "infill" in parts:
            base_tot -= left_logprobs(base, rows[i:i + 1, :start + L])[0, start:].sum().item()
        n_tok += L
    if "infill" in parts or "right" in parts:
        res["infill_tokens"] = n_tok
        if model is not None:
            res["infill_a3"] = a3_tot / n_tok
        if base is not None and "infill" in parts:
            res["infill_base_left"] = base_tot / n_tok
    if "right" in parts and model is not None:
        res["edge_tokens"] = 2 * len(rows)
        for key, total in right.items():
            res[key] = total / (n_tok if not key.endswith("2") else 2 * len(rows))
        res.update(right_gains(res))
    # single masked word
    hits_a3 = hits_base = n_words = 0
    for i in range(len(rows) if "word" in parts else 0):  # the last draws: nothing follows them
        cands = [p for p in word_positions(tokenizer, rows[i].tolist()) if p > T // 8]
        if not cands:
            continue
        p = rng.choice(cands)
        if "word" not in parts:
            continue
        if model is not None:
            g = group_ids_from_order(T, [q for q in range(T) if q != p], [[p]])
            logits = model(rows[i:i + 1], g[None].to(rows.device)).logits[0, p]
            hits_a3 += int(logits.argmax().item() == rows[i, p].item())
        if base is not None:
            blogits = base(input_ids=rows[i:i + 1, :p]).logits[0, -1]
            hits_base += int(blogits.argmax().item() == rows[i, p].item())
        n_words += 1
    if "word" in parts:
        res["words"] = n_words
        if model is not None:
            res["word_top1_a3"] = hits_a3 / max(1, n_words)
        if base is not None:
            res["word_top1_base_left"] = hits_base / max(1, n_words)
    if {"a3_ar", "base_ar"} <= res.keys():
        res["a3_ar_vs_base"] = res["a3_ar"] / res["base_ar"] - 1
    if {"infill_a3", "infill_base_left"} <= res.keys():
        res["infill_gain"] = 1 - res["infill_a3"] / res["infill_base_left"]
    return res


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m model.metrics",
                                description="Held-out likelihood metrics of an A3 checkpoint vs its AR base.")
    p.add_argument("--model", action="append", help="A3 checkpoint directory (default assets/a3-austen-tiny); "
                   "with --domains, repeat it to compare several")
    p.add_argument("--base", default="assets/austen-base-tiny",
                   help="the AR base checkpoint it was adapted from, or smollm2-135m-gguf (the converted SmolLM2)")
    p.add_argument("--data", default="data/austen", help="prepared corpus (python -m model.data prepare)")
    p.add_argument("--rows", type=int, default=128, help="held-out rows to use (from the start of eval; "
                   "with --domains: per domain)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per row, BOS included")
    p.add_argument("--seed", type=int, default=0, help="seed for orders, spans and words")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--device", default="cpu", help="cpu or cuda (fp32 on either)")
    p.add_argument("--domains", action="store_true", help="per Brown genre, all Brown and Austen: left-to-right, "
                   "infilling and masked-word metrics of every --model against the base (model/evaluation/domains.py)")
    p.add_argument("--out", default="docs/domains", help="with --domains: where the table goes")
    a = p.parse_args(argv)
    if a.seq_len < 48 or a.rows < 1:
        p.error(f"--seq-len must be at least 48 (the 5-20 token spans sit in the middle half of a row) and "
                f"--rows at least 1; got --seq-len {a.seq_len} --rows {a.rows}")
    models = a.model or ["assets/a3-austen-tiny"]
    if a.domains:  # the per-domain table: model/evaluation/domains.py, through its own entry point
        raise SystemExit("run the per-domain table as `python -m model.metrics --domains ...`")
    model, tok = load_a3(models[-1], device=a.device)
    base = resolve_base(a.base).to(a.device).eval()
    rows = load_packed(a.data, "eval", a.seq_len, tok)[:a.rows].to(a.device)
    res = measure_card(model, base, tok, rows, seed=a.seed)
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
