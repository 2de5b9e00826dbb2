"""Planning a candidate run: which blank lengths, which decode configs, which ranking rule, and the
caps that keep a request within what the machine holds.

    plan_candidates(settings, segments, cfg, tokenizer, max_positions) -> CandidatePlan | None

A run makes candidates when the user asks for more than one (settings["candidates"] = N) or when a
blank's length is the model's to choose (`[[?]]`, `[[a-b]]`, or "let the model choose" on a
selection). Candidate 0 is always the user's own settings; the other N - 1 come from the chosen
pool (core/candidates.py): other orders and group sizes ("orders"), or samples at temperature 0.8
("samples"). A chosen-length blank is tried at every length of length_grid(lo, hi) with each
config. The ranking rules are the ones `python -m model.fills` measured (docs/fills/): RULE for
candidates at the length the user gave, LENGTH_RULE when the model chooses the length.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from model.core.candidates import (POOLS, SHIPPED_LENGTH_RULE, SHIPPED_LENGTH_WEIGHTS, SHIPPED_RULE, length_grid,
                                   pool_configs)
from model.core.decode import DecodeConfig
from model.core.infill import Blank, Encoded, encode_segments

from .render import strategy_label

MAX_CANDIDATES = 8
DEFAULT_CANDIDATES = 1  # the app animates your own order by default; raise it to rank more candidates
MAX_ROWS = 32  # rows (candidates x lengths) one request may decode together
MAX_CANDIDATE_TOKENS = 2048  # blank tokens summed over every row
GRID_LENGTHS = 8  # lengths tried for a blank whose length the model chooses
RULE = SHIPPED_RULE  # the core's shipped rules, measured by python -m model.fills (docs/fills/)
LENGTH_RULE, LENGTH_WEIGHTS = SHIPPED_LENGTH_RULE, SHIPPED_LENGTH_WEIGHTS


@dataclass
class LengthRequest:
    length: int  # the chosen-length blank's length in this request (or the story's only length)
    enc: Encoded


@dataclass
class CandidatePlan:
    requests: list[LengthRequest]
    configs: list[tuple[str, DecodeConfig]]  # (label, config); 0 is the user's own
    rule: str
    weights: dict | None  # the mixture's weights when rule is "mix"
    pool: str
    lengths: list[int]  # the lengths tried ([] when the user gave every length)
    note: str  # what was capped, in words ("" when nothing was)


def _pool_members(pool: str, n: int, cfg: DecodeConfig, seed: int) -> list[tuple[str, DecodeConfig]]:
    """The user's config first, then pool members that differ from it, n in all."""
    own = (strategy_label({"strategy": cfg.strategy, "group_size": cfg.group_size, "threshold": cfg.threshold})
           + (f", T = {cfg.sampling.temperature:g}" if cfg.sampling.do_sample else ""))
    out = [(f"your settings: {own}", cfg)]
    members = pool_configs(pool, 8, seed)[1:] if pool == "samples" else pool_configs(pool, 8, seed)
    for label, c in members:
        if len(out) == n:
            break
        if pool == "orders" and (c.strategy, c.group_size) == (cfg.strategy, cfg.group_size) and not cfg.sampling.do_sample:
            continue  # the same greedy fill as the user's own
        out.append((label, replace(c, context=cfg.context, n_alternatives=cfg.n_alternatives)))
    return out


def plan_candidates(settings: dict, segments: list, cfg: DecodeConfig, tokenizer,
                    max_positions: int) -> CandidatePlan | None:
    """The plan of a run, or None for a plain run (one candidate, every length given)."""
    n, pool = settings.get("candidates", 1), settings.get("pool", "orders")
    if pool not in POOLS:
        raise ValueError(f"unknown candidate pool {pool!r}; pick one of {', '.join(POOLS)}")
    chosen = next((i for i, s in enumerate(segments) if isinstance(s, Blank) and s.choose is not None), None)
    if n == 1 and chosen is None:
        return None
    if chosen is not None and cfg.strategy == "custom":
        raise ValueError("a custom order cannot be used with a blank whose length the model chooses ([[?]] or "
                         "[[a-b]]); pick another order, or give that blank a number of tokens")
    notes = []
    configs = _pool_members(pool, n, cfg, settings.get("seed", 0))
    if len(configs) < n:
        notes.append(f"the {pool} pool has {len(configs)} members different from your settings")
    lengths = length_grid(*segments[chosen].choose, GRID_LENGTHS) if chosen is not None else []
    fixed = sum(s.length for s in segments if isinstance(s, Blank) and s.choose is None)

    def tokens(n_cfg, lens):
        return n_cfg * sum(fixed + L for L in lens) if lens else n_cfg * fixed

    while len(configs) > 1 and (len(configs) * max(1, len(lengths)) > MAX_ROWS
                                or tokens(len(configs), lengths) > MAX_CANDIDATE_TOKENS):
        configs.pop()
    while len(lengths) > 2 and (len(lengths) > MAX_ROWS or tokens(1, lengths) > MAX_CANDIDATE_TOKENS):
        lengths = lengths[::2] if lengths[-1] in lengths[::2] else lengths[::2] + [lengths[-1]]
    if len(configs) < min(n, MAX_CANDIDATES) and not notes:
        notes.append(f"ran {len(configs)} candidates instead of {n}: at most {MAX_ROWS} rows and "
                     f"{MAX_CANDIDATE_TOKENS} blank tokens fit in one request here")
    if chosen is not None and len(lengths) < len(length_grid(*segments[chosen].choose, GRID_LENGTHS)):
        notes.append(f"tried {len(lengths)} lengths to stay within {MAX_CANDIDATE_TOKENS} blank tokens")
    requests = []
    for L in lengths or [None]:
        segs = list(segments)
        if L is not None:
            segs[chosen] = replace(segs[chosen], length=L)
        requests.append(LengthRequest(L if L is not None else fixed, encode_segments(
            tokenizer, segs, tokenizer.bos_token_id, max_positions)))
    rule, weights = (LENGTH_RULE, LENGTH_WEIGHTS) if lengths else (RULE, None)
    return CandidatePlan(requests, configs, rule, weights, pool, lengths, "; ".join(notes))
