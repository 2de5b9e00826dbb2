"""Planning a candidate run: which blank lengths, which decode configs, which ranking rule, and the
caps that keep a request within what the machine holds.

    plan_candidates(run: request.PreparedRun) -> CandidatePlan | None

A run makes candidates when the user asks for more than one (RunRequest.candidates = N) or when a
blank's length is the model's to choose (`[[?]]`, `[[a-b]]`, or "let the model choose" on a
selection). Candidate 0 is always the user's own settings; the other N - 1 come from the chosen
pool (core/candidates.py): other orders and group sizes ("orders"), or samples at temperature 0.8
("samples"). A chosen-length blank is planned one of two ways:

- the model has a learned length signal (core/chosen_length.length_signal): ONE request whose blank
  has M = min(hi, max_slots) slots, every config made a slack config (core/candidates.slack_configs),
  so each candidate ends its own fill where the model writes its empty token, after at least lo
  tokens; RULE ranks them (each fill ended itself, so no length score is needed);
- it has none (the fallback): the blank is tried at every length of length_grid(lo, hi) with each
  config, the story resized by core/candidates.resize_encoded, and LENGTH_RULE picks the length.

The ranking rules are the ones `python -m model.fills` measured (docs/fills/): RULE at a length the
user gave or the model ended, LENGTH_RULE across the grid's lengths. Nothing here decodes:
compute.py runs the plan.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from model.core.candidates import (SHIPPED_LENGTH_RULE, SHIPPED_LENGTH_WEIGHTS, SHIPPED_RULE, length_grid,
                                   pool_configs, resize_encoded, slack_configs)
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
    lengths: list[int]  # the grid's lengths tried ([] when the user gave every length, or the model ends it)
    note: str  # what was capped, in words ("" when nothing was)
    # the blank the model ends with its length signal: {blank, first, slots, least, empty_id, empty_token}
    slack: dict | None = None
    chosen: int | None = None  # the index of the blank whose length the grid tries (None: no grid)


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


def _capped(configs: list, lengths: list[int], fixed: int) -> tuple[list, list[int]]:
    """Fewer configs, then fewer lengths, until rows and blank tokens fit MAX_ROWS and
    MAX_CANDIDATE_TOKENS (fixed: the tokens of the blanks whose length is given)."""
    def tokens(n_cfg, lens):
        return n_cfg * sum(fixed + L for L in lens) if lens else n_cfg * fixed

    configs, lengths = list(configs), list(lengths)
    while len(configs) > 1 and (len(configs) * max(1, len(lengths)) > MAX_ROWS
                                or tokens(len(configs), lengths) > MAX_CANDIDATE_TOKENS):
        configs.pop()
    while len(lengths) > 2 and (len(lengths) > MAX_ROWS or tokens(1, lengths) > MAX_CANDIDATE_TOKENS):
        lengths = lengths[::2] if lengths[-1] in lengths[::2] else lengths[::2] + [lengths[-1]]
    return configs, lengths


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
    members = _pool_members(run, n)
    if len(members) < n:
        notes.append(f"the {req.pool} pool has {len(members)} members different from your settings")
    signal = run.signal
    ends_itself = bool(chosen is not None and signal and chosen[1][0] <= signal["max_slots"])
    if chosen is not None and signal and not ends_itself:
        notes.append(f"the model ends fills within {signal['max_slots']} tokens and this range starts above "
                     "that, so several lengths were tried")
    slots = min(chosen[1][1], signal["max_slots"]) if ends_itself else 0  # M
    grid = length_grid(*chosen[1], GRID_LENGTHS) if chosen is not None and not ends_itself else []
    spans = enc.blank_spans
    fixed = sum(len(s) for i, s in enumerate(spans) if chosen is None or i != chosen[0])
    configs, lengths = _capped(members, [slots] if ends_itself else grid, fixed)
    if len(configs) < n and not notes:
        notes.append(f"ran {len(configs)} candidates instead of {n}: at most {MAX_ROWS} rows and "
                     f"{MAX_CANDIDATE_TOKENS} blank tokens fit in one request here")
    if len(lengths) < len(grid):
        notes.append(f"tried {len(lengths)} lengths to stay within {MAX_CANDIDATE_TOKENS} blank tokens")
    if lengths and len(enc.input_ids) - len(spans[chosen[0]]) + lengths[-1] > run.max_positions:
        raise ValueError(f"at {lengths[-1]} tokens the blank makes the story longer than the model's context "
                         f"({run.max_positions} tokens); shorten the text or the blank's range")
    if ends_itself:  # one request of M slots; each candidate's fill ends where the model writes its end
        if slots < chosen[1][1]:
            notes.append(f"the model ends a fill within {signal['max_slots']} tokens, so the blank had {slots} "
                         f"slots instead of up to {chosen[1][1]}")
        resized = resize_encoded(enc, chosen[0], slots)
        first, lo = resized.blank_spans[chosen[0]][0], chosen[1][0]
        slack = {"blank": chosen[0], "first": first, "slots": slots, "least": lo,
                 "empty_id": signal["empty_id"], "empty_token": signal.get("empty_token", "")}
        return CandidatePlan([LengthRequest(slots, resized)], slack_configs(configs, first, slots, lo), RULE, None,
                             req.pool, [], "; ".join(notes), slack)
    requests = ([LengthRequest(L, resize_encoded(enc, chosen[0], L)) for L in lengths] if lengths
                else [LengthRequest(fixed, enc)])
    rule, weights = (LENGTH_RULE, LENGTH_WEIGHTS) if lengths else (RULE, None)
    return CandidatePlan(requests, configs, rule, weights, req.pool, lengths, "; ".join(notes),
                         chosen=chosen[0] if lengths else None)
