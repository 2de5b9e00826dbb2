"""Planning a candidate run: which blank lengths, which decode configs, which ranking rule, and the
caps that keep a request within what the machine holds.

    plan_candidates(run: request.PreparedRun) -> CandidatePlan | None

A run makes candidates when the user asks for more than one (RunRequest.candidates = N) or when a
blank's length is the model's to choose (`[[?]]`, `[[a-b]]`, or "let the model choose" on a
selection). Candidate 0 is always the user's own settings; the other N - 1 come from the chosen
pool (core/candidates.py): other orders and group sizes ("orders"), or samples at temperature 0.8
("samples"). A chosen-length blank is tried at every length of length_grid(lo, hi) with each
config, the story resized by core/candidates.resize_encoded. The ranking rules are the ones
`python -m model.fills` measured (docs/fills/): RULE for candidates at the length the user gave,
LENGTH_RULE when the model chooses the length. Nothing here decodes: compute.py runs the plan.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from model.core.candidates import (SHIPPED_LENGTH_RULE, SHIPPED_LENGTH_WEIGHTS, SHIPPED_RULE, length_grid,
                                   pool_configs, resize_encoded)
from model.core.decode import DecodeConfig
from model.core.infill import Encoded

from .render import strategy_label

MAX_ROWS = 32  # rows (candidates x lengths) one request may decode together
MAX_CANDIDATE_TOKENS = 2048  # blank tokens summed over every row
GRID_LENGTHS = 8  # lengths tried for a blank whose length the model chooses
RULE = SHIPPED_RULE  # the core's shipped rules, measured by python -m model.fills (docs/fills/)
LENGTH_RULE, LENGTH_WEIGHTS = SHIPPED_LENGTH_RULE, SHIPPED_LENGTH_WEIGHTS


@dataclass
class LengthRequest:
    length: int  # the chosen-length blank's length in this request (or the story's only length)
    enc: Encoded

    @property
    def request(self) -> tuple:
        """As core/candidates.make_candidates takes a request: (ids, blank_mask, spans, length)."""
        return self.enc.input_ids, self.enc.blank_mask, self.enc.blank_spans, self.length


@dataclass
class CandidatePlan:
    requests: list[LengthRequest]
    configs: list[tuple[str, DecodeConfig]]  # (label, config); 0 is the user's own
    rule: str
    weights: dict | None  # the mixture's weights when rule is "mix"
    pool: str
    lengths: list[int]  # the lengths tried ([] when the user gave every length)
    note: str  # what was capped, in words ("" when nothing was)


def _pool_members(run, n: int) -> list[tuple[str, DecodeConfig]]:
    """The user's config first, then pool members that differ from it, n in all."""
    req, cfg = run.request, run.cfg
    own = strategy_label(req.settings) + (f", T = {req.temperature:g}" if req.temperature > 0 else "")
    out = [(f"your settings: {own}", cfg)]
    members = pool_configs(req.pool, 8, req.seed)
    for label, c in members[1:] if req.pool == "samples" else members:
        if len(out) == n:
            break
        if req.pool == "orders" and (c.strategy, c.group_size) == (cfg.strategy, cfg.group_size) and req.temperature == 0:
            continue  # the same greedy fill as the user's own
        out.append((label, replace(c, context=cfg.context, n_alternatives=cfg.n_alternatives)))
    return out


def plan_candidates(run) -> CandidatePlan | None:
    """The plan of a prepared run (request.PreparedRun), or None for a plain run (one candidate,
    every length given); ValueError says what to change."""
    req, enc = run.request, run.enc
    n, chosen = req.candidates, enc.chosen  # chosen: (blank index, (lo, hi)) or None
    if n == 1 and chosen is None:
        return None
    if chosen is not None and req.strategy == "custom":
        raise ValueError("a custom order cannot be used with a blank whose length the model chooses ([[?]] or "
                         "[[a-b]]); pick another order, or give that blank a number of tokens")
    notes = []
    configs = _pool_members(run, n)
    if len(configs) < n:
        notes.append(f"the {req.pool} pool has {len(configs)} members different from your settings")
    grid = length_grid(*chosen[1], GRID_LENGTHS) if chosen is not None else []
    lengths = list(grid)
    spans = enc.blank_spans
    fixed = sum(len(s) for i, s in enumerate(spans) if chosen is None or i != chosen[0])

    def tokens(n_cfg, lens):
        return n_cfg * sum(fixed + L for L in lens) if lens else n_cfg * fixed

    while len(configs) > 1 and (len(configs) * max(1, len(lengths)) > MAX_ROWS
                                or tokens(len(configs), lengths) > MAX_CANDIDATE_TOKENS):
        configs.pop()
    while len(lengths) > 2 and (len(lengths) > MAX_ROWS or tokens(1, lengths) > MAX_CANDIDATE_TOKENS):
        lengths = lengths[::2] if lengths[-1] in lengths[::2] else lengths[::2] + [lengths[-1]]
    if len(configs) < n and not notes:
        notes.append(f"ran {len(configs)} candidates instead of {n}: at most {MAX_ROWS} rows and "
                     f"{MAX_CANDIDATE_TOKENS} blank tokens fit in one request here")
    if len(lengths) < len(grid):
        notes.append(f"tried {len(lengths)} lengths to stay within {MAX_CANDIDATE_TOKENS} blank tokens")
    if lengths and len(enc.input_ids) - len(spans[chosen[0]]) + lengths[-1] > run.max_positions:
        raise ValueError(f"at {lengths[-1]} tokens the blank makes the story longer than the model's context "
                         f"({run.max_positions} tokens); shorten the text or the blank's range")
    requests = ([LengthRequest(L, resize_encoded(enc, chosen[0], L)) for L in lengths] if lengths
                else [LengthRequest(fixed, enc)])
    rule, weights = (LENGTH_RULE, LENGTH_WEIGHTS) if lengths else (RULE, None)
    return CandidatePlan(requests, configs, rule, weights, req.pool, lengths, "; ".join(notes))
