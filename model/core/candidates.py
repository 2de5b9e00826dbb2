"""Candidate fills of one story, and the rules that rank them (docs/DESIGN.md, "Candidates").

    pool_configs(pool, n, seed)                 (label, DecodeConfig) of the n members of a pool
    make_candidates(model, requests, ..., tok)  decode every (request, config) in one batch, score each:
                                                candidate_batch (the rows) + candidates_of (the Candidates),
                                                which the app calls around its own batched compute
    rank(cands, rule)                           the candidates, best first, under one of RULES
    needs_right(rule, weights)                  whether a rule reads the text after the blank (score_fills' right)
    needs_both(rule, weights)                   whether a rule reads the fill given both sides (score_fills' both)
    with_both(model, cand)                      a candidate scored without `both` (both=False), given it
    resize_blank(ids, mask, span, length)       a request with one blank set to another length, and the two
                                                forms built on it: length_requests (make_candidates'
                                                requests) and resize_encoded (an infill.Encoded, layout moved)
    length_grid(lo, hi, n)                      the lengths tried for a blank whose length the model picks

Two pools, both only an any-order model can draw from one network:
  "orders"   greedy fills under different orders and group sizes (left to right first)
  "samples"  the greedy left-to-right fill, then samples at temperature 0.8 (other seeds)
A candidate's scores are score_fills' (exact likelihoods of the story, of the text right of
the blank, of the fill given both sides); RULES turn them into one number. "mbr" needs no model:
the candidate that agrees most (token LCS F-measure) with the others, minimum Bayes risk;
a "fluent_" prefix (the app's rules) ranks the fills the model reads as fluent first.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from .decode import DecodeConfig, run_batch
from .infill import Encoded
from .sampling import SamplingConfig
from .scoring import FillScores, blanks_logp, score_fills, scored_by_its_run
from .trace import Trace

ORDER_POOL = [  # in the order a pool of n takes them; greedy left to right first (the baseline)
    ("left to right", dict()),
    ("outside in, groups of 4", dict(strategy="outside_in", group_size=4)),
    ("left to right, groups of 2", dict(group_size=2)),
    ("confidence", dict(strategy="confidence")),
    ("margin, k = 2", dict(strategy="margin", group_size=2)),
    ("outside in", dict(strategy="outside_in")),
    ("entropy, k = 4", dict(strategy="entropy", group_size=4)),
    ("right to left, groups of 2", dict(strategy="right_to_left", group_size=2)),
]
POOLS = ("orders", "samples")
SAMPLE_TEMPERATURE = 0.8


def pool_configs(pool: str, n: int, seed: int = 0) -> list[tuple[str, DecodeConfig]]:
    """The first n members of a pool, each a (label, DecodeConfig); member 0 is greedy left to right."""
    if pool not in POOLS:
        raise ValueError(f"unknown candidate pool {pool!r}; choose one of {', '.join(POOLS)}")
    if not 1 <= n <= len(ORDER_POOL) * 4:
        raise ValueError(f"the number of candidates must be between 1 and {len(ORDER_POOL) * 4}; got {n}")
    if pool == "orders":
        if n > len(ORDER_POOL):
            raise ValueError(f"the orders pool has {len(ORDER_POOL)} members; ask for at most that many")
        return [(label, DecodeConfig(**kw, sampling=SamplingConfig(seed=seed))) for label, kw in ORDER_POOL[:n]]
    out = [("left to right (greedy)", DecodeConfig(sampling=SamplingConfig(seed=seed)))]
    for i in range(1, n):
        s = SamplingConfig(do_sample=True, temperature=SAMPLE_TEMPERATURE, seed=seed + i)
        out.append((f"sample {i} (T = {SAMPLE_TEMPERATURE}, seed {seed + i})", DecodeConfig(sampling=s)))
    return out


@dataclass
class Candidate:
    label: str  # which pool member made it (and at which length)
    trace: Trace
    scores: FillScores
    length: int  # tokens in the blank(s)
    values: dict[str, float] = field(default_factory=dict)  # each rule's value, filled by rank()

    @property
    def fill_ids(self) -> list[int]:
        return [t for ids in self.trace.fill_ids() for t in ids]


def make_candidates(model, requests: Sequence[tuple], configs: Sequence[tuple[str, DecodeConfig]],
                    tokenizer=None, right: bool = True, both: bool = True) -> list[Candidate]:
    """Every config on every request, decoded in one batch and scored.

    requests: (ids, blank_mask, spans or None, length) per blank length tried (one entry for a
    known length); configs: pool_configs' (label, DecodeConfig); right: score the text after the
    blank too (score_fills; False is enough for a rule that `needs_right` says does not read it);
    both: score every fill given both sides (False: only the runs that scored themselves have it,
    `runs_both`; `with_both` adds it to the one that is shown)."""
    rows, cfgs = candidate_batch(requests, configs)
    traces = run_batch(model, [(r[0], r[1]) for r in rows], cfgs, tokenizer, [r[2] for r in rows])
    scores = score_fills(model, [(t.output_ids, t.blank_mask) for t in traces], right=right, both=both)
    return candidates_of(requests, configs, traces, runs_both(scores, traces, cfgs))


def runs_both(scores: Sequence[FillScores], traces: Sequence[Trace], cfgs: Sequence[DecodeConfig]
              ) -> list[FillScores]:
    """The scores with `both` taken from the run itself where score_fills did not compute it and
    the run's own log-likelihood is that number (scoring.scored_by_its_run: the greedy left-to-right
    member of a pool), free of any walk."""
    return [replace(s, both=t.log_likelihood) if s.both is None and scored_by_its_run(c, t) else s
            for s, t, c in zip(scores, traces, cfgs)]


def with_both(model, cand: "Candidate") -> "Candidate":
    """cand with scores.both (log p of its fill given both sides, exact) where it was scored without
    it (score_fills(both=False)): one walk of its own row (scoring.blanks_logp, the same number)."""
    if cand.scores.both is not None:
        return cand
    t = cand.trace
    cand.scores = replace(cand.scores, both=blanks_logp(model, [(t.output_ids, t.blank_mask)])[0])
    return cand


def candidate_batch(requests: Sequence[tuple], configs: Sequence[tuple[str, DecodeConfig]]
                    ) -> tuple[list[tuple], list[DecodeConfig]]:
    """The rows of a candidate batch, every config on every request (request-major): the rows
    (ids, blank_mask, spans) and the config of each."""
    rows = [(r[0], r[1], r[2]) for r in requests for _ in configs]
    return rows, [cfg for _ in requests for _, cfg in configs]


def candidates_of(requests: Sequence[tuple], configs: Sequence[tuple[str, DecodeConfig]],
                  traces: Sequence[Trace], scores: Sequence[FillScores]) -> list[Candidate]:
    """The traces and FillScores of candidate_batch's rows as Candidates, in the batch's order, each
    labelled by its config (and by its length when several lengths were tried)."""
    multi = len(requests) > 1
    jobs = [(r, lab) for r in requests for lab, _ in configs]
    out = []
    for (r, lab), t, s in zip(jobs, traces, scores):
        if t.chosen:  # a slack blank: the model ended the fill itself, or used every slot
            how = "the model's end" if t.chosen["p_end"] is not None else f"all {t.chosen['slots']} slots"
            out.append(Candidate(f"{lab}, {t.chosen['length']} tokens ({how})", t, s, t.chosen["length"]))
        else:
            out.append(Candidate(f"{lab}{f', {r[3]} tokens' if multi else ''}", t, s, r[3]))
    return out


def slack_configs(configs: Sequence[tuple[str, DecodeConfig]], first: int, slots: int, least: int = 1
                  ) -> list[tuple[str, DecodeConfig]]:
    """The configs with one blank of `slots` positions from `first` whose length the model ends
    with its learned signal (chosen_length.py), at least `least` tokens: one request then covers
    every length up to `slots`, each candidate ending where its own fill does."""
    return [(lab, replace(cfg, slack=(first, slots, least))) for lab, cfg in configs]


def _lcs(a: Sequence[int], b: Sequence[int]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def agreement(cands: Sequence[Candidate]) -> list[float]:
    """Each candidate's mean LCS F-measure (ROUGE-L on token ids) against the other candidates."""
    fills = [c.fill_ids for c in cands]
    out = []
    for i, a in enumerate(fills):
        f = [2 * _lcs(a, b) / (len(a) + len(b)) for j, b in enumerate(fills) if j != i and a and b]
        out.append(statistics.mean(f) if f else 0.0)  # exact: equal agreements tie, and ties keep pool order
    return out


FLUENT_NATS = 1.0  # a fill within this many nats per token of the most fluent candidate is fluent
FLUENT = "fluent_"  # a rule's prefix: rank the fluent candidates first, each group by the rule


def fluent_gate(fluency: Sequence[float]) -> list[bool]:
    """Which of these fluencies (fill_left per token, nats) are within FLUENT_NATS of the best."""
    best = max(fluency, default=0.0)
    return [f >= best - FLUENT_NATS for f in fluency]


def fluent(cands: Sequence[Candidate]) -> list[bool]:
    """Whether each fill reads, left to right (its fill_left per token), within FLUENT_NATS nats
    per token of the most fluent candidate. Grouped orders write fills like "The the crew of,, the,"
    that share words with the others and win on agreement alone; the model itself finds them
    4-5x less likely a token (docs/fills/: the fluency column)."""
    return fluent_gate([c.scores.fill_left / max(1, c.scores.n_fill) for c in cands])


# The rules the app ships, chosen by `python -m model.fills` (docs/fills/): among the fluent
# candidates, agreement at a length the user gave; for a length the model chooses, log p of the
# text after the blank (the same tokens at every length) plus 8 x agreement, with fixed weights.
SHIPPED_RULE = "fluent_mbr"
SHIPPED_LENGTH_RULE, SHIPPED_LENGTH_WEIGHTS = "fluent_mix", {"right": 1.0, "mbr": 8.0}


RIGHT_PARTS = ("story", "right")  # the RULES that need score_fills(right=True)
BOTH_PARTS = ("both_per_token",)  # the RULES that need score_fills(both=True)


def _reads(parts: tuple[str, ...], rule: str, weights: dict[str, float] | None) -> bool:
    base = rule[len(FLUENT):] if rule.startswith(FLUENT) else rule
    return base in parts or (base == "mix" and any(n in parts for n in (weights or {})))


def needs_right(rule: str, weights: dict[str, float] | None = None) -> bool:
    """Whether ranking by `rule` (with a "mix" rule's weights) reads story or right, which only
    score_fills(right=True) computes; "greedy", "mbr" and the per-token likelihoods do not."""
    return _reads(RIGHT_PARTS, rule, weights)


def needs_both(rule: str, weights: dict[str, float] | None = None) -> bool:
    """Whether ranking by `rule` (with a "mix" rule's weights) reads both (both_per_token), which
    only score_fills(both=True) computes for every candidate; the shipped rules do not."""
    return _reads(BOTH_PARTS, rule, weights)


RULES: dict[str, Callable[[FillScores], float]] = {
    "story": lambda s: s.story,  # the exact log-likelihood of the whole story
    "right": lambda s: s.right,  # how well the fill explains what follows (length-comparable)
    "both_per_token": lambda s: s.both / max(1, s.n_fill),  # A3's both-sides likelihood of the fill, per token
    "fill_left_per_token": lambda s: s.fill_left / max(1, s.n_fill),
}


def rule_values(cands: Sequence[Candidate], rule: str, weights: dict[str, float] | None = None,
                length_prior: Callable[[int], float] | None = None,
                agreements: Sequence[float] | None = None) -> list[float]:
    """One number per candidate (higher is better): a rule of RULES, "mbr", "greedy" (the first
    candidate), or "mix" (weights over the other rules' values, plus an optional log length prior)."""
    if rule == "greedy":
        return [1.0] + [0.0] * (len(cands) - 1)
    if rule == "mbr":  # agreements: this pool's `agreement`, computed before (a study ranks a pool many times)
        return list(agreements) if agreements is not None else agreement(cands)
    if rule.startswith(FLUENT):  # the rule's own values; `rank` puts the fluent candidates first
        return rule_values(cands, rule[len(FLUENT):], weights, length_prior, agreements)
    if rule == "mix":
        parts = {name: rule_values(cands, name, agreements=agreements) for name in (weights or {})}
        return [sum(w * parts[n][i] for n, w in (weights or {}).items())
                + (length_prior(c.length) if length_prior else 0.0) for i, c in enumerate(cands)]
    if rule not in RULES:
        raise ValueError(f"unknown ranking rule {rule!r}; choose one of greedy, mbr, mix, "
                         f"{', '.join(RULES)}, each optionally prefixed {FLUENT!r}")
    if rule in RIGHT_PARTS and any(getattr(c.scores, rule) is None for c in cands):
        raise ValueError(f"rule {rule!r} reads the text after the blank, which these candidates were scored "
                         "without; score them with right=True (make_candidates, score_fills)")
    if rule in BOTH_PARTS and any(c.scores.both is None for c in cands):
        raise ValueError(f"rule {rule!r} reads the fill given both sides, which these candidates were scored "
                         "without; score them with both=True (make_candidates, score_fills)")
    return [RULES[rule](c.scores) for c in cands]


def rank(cands: Sequence[Candidate], rule: str, **kw) -> list[Candidate]:
    """The candidates best first under `rule` (ties keep pool order); each records its value.
    "fluent_<rule>": the fluent candidates (`fluent`) first, each group ordered by <rule>."""
    values = rule_values(cands, rule, **kw)
    for c, v in zip(cands, values):
        c.values[rule] = v
    gate = fluent(cands) if rule.startswith(FLUENT) else [True] * len(cands)
    order = sorted(range(len(cands)), key=lambda i: (not gate[i], -values[i], i))
    return [cands[i] for i in order]


def resize_blank(ids: Sequence[int], mask: Sequence[bool], span: Sequence[int], length: int,
                 fill_id: int) -> tuple[list[int], list[bool], int]:
    """(ids, mask, shift) with the blank at positions `span` (contiguous) replaced by `length` blank
    positions holding fill_id; positions after it move by `shift` = length - len(span)."""
    if length < 1:
        raise ValueError(f"a blank holds at least 1 token; got {length}")
    a, b = span[0], span[-1] + 1
    ids, mask = list(ids), list(mask)
    return ids[:a] + [fill_id] * length + ids[b:], mask[:a] + [True] * length + mask[b:], length - (b - a)


def length_requests(ids: Sequence[int], mask: Sequence[bool], spans: Sequence[Sequence[int]],
                    lengths: Sequence[int], blank: int = 0) -> list[tuple]:
    """make_candidates' requests (ids, mask, spans, length) for a blank whose length the model
    chooses: blank number `blank` of `spans` resized (resize_blank) to each of `lengths`, still
    holding the id its first position held, and the spans after it moved."""
    span, out = spans[blank], []
    for n in lengths:
        new_ids, new_mask, shift = resize_blank(ids, mask, span, n, ids[span[0]])
        new_spans = [list(s) for s in spans[:blank]] + [list(range(span[0], span[0] + n))] + [
            [p + shift for p in s] for s in spans[blank + 1:]]
        out.append((new_ids, new_mask, new_spans, n))
    return out


def resize_encoded(enc: Encoded, blank: int, length: int) -> Encoded:
    """An encoded story (infill.Encoded) with blank number `blank` resized to `length` positions
    (resize_blank); every piece of the layout after it moves with it."""
    span = enc.blank_spans[blank]
    ids, mask, shift = resize_blank(enc.input_ids, enc.blank_mask, span, length, enc.input_ids[span[0]])
    layout, seen = [], 0
    for p in enc.layout:
        if p.kind == "blank" and seen == blank:
            positions = list(range(span[0], span[0] + length))
        else:
            positions = [q + shift if q > span[-1] else q for q in p.positions]
        seen += p.kind == "blank"
        layout.append(replace(p, positions=positions))
    return Encoded(ids, mask, layout)


def length_grid(lo: int, hi: int, n: int = 8) -> list[int]:
    """About n blank lengths from lo to hi, geometric (as many short lengths as long ones), distinct."""
    if not 1 <= lo <= hi:
        raise ValueError(f"a length range must satisfy 1 <= low <= high; got {lo}-{hi}")
    if hi == lo or n <= 1:
        return [lo] if hi == lo else [lo, hi]
    steps = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
    return sorted({min(hi, max(lo, int(math.floor(x + 0.5)))) for x in steps})


__all__ = ["slack_configs", "Candidate", "ORDER_POOL", "POOLS", "RULES", "agreement", "candidate_batch", "candidates_of",
           "length_grid", "length_requests", "make_candidates", "needs_both", "needs_right", "pool_configs", "rank",
           "resize_blank", "resize_encoded", "rule_values", "runs_both", "with_both"]
