"""A blank whose length the model chooses, with the learned length signal (docs/DESIGN.md,
"Blank lengths the model chooses").

A checkpoint trained with slack blanks (model/training/slack_rows.py) names an *empty* token in
`a3_config.length_signal`. A blank of M slots is then decoded like any other, with two rules:

- a slot may take the empty token only while no later slot of the blank holds a word, so the
  fill stays at the front of the slots and the empties at the back, as in training, and only
  after the fill's least length (a `[[a-b]]` blank's a);
- when a slot takes the empty token, every open slot after it closes (it gets the empty token
  too, without a model call): the fill ends there.

At every other blank, and at every blank of a model without the signal, the empty token stays
excluded (sampling.excluded_ids): fixed-length decoding and its likelihoods are unchanged.
`compact` turns a finished run into the run of the story as filled: the empty slots removed,
positions after them moved up, and what the model said of the length kept in `Trace.chosen`.

    SlackBlank(first, slots, empty_id)      the slots of one row's blank
    slack.allowed(open, ids)                (S,) slots that may take the empty token now
    slack.closing(positions, tokens, open)  slots that close after this step's choices
    compact(trace, slack)                   the Trace of the filled story, with .chosen
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from .trace import Trace


def length_signal(model) -> dict:
    """The model's learned length signal ({"empty_id", "empty_token", "max_slots"}), or {} if none."""
    cfg = getattr(model, "a3_config", None)
    return dict(getattr(cfg, "length_signal", None) or {})


@dataclass
class SlackBlank:
    """One blank of `slots` positions from `first`, ending where the empty token is written, after
    at least `min_length` words."""
    first: int
    slots: int
    empty_id: int
    min_length: int = 1

    @property
    def positions(self) -> range:
        return range(self.first, self.first + self.slots)

    def allowed(self, open_: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(slots,) True where the empty token may go now: a slot with no word committed after it.
        open_, ids: the row's (T,) open-blank mask and ids."""
        pos = torch.arange(self.first, self.first + self.slots, device=ids.device)
        word = ~open_[pos] & (ids[pos] != self.empty_id)  # (S,) slots holding a word
        later_word = torch.flip(torch.cummax(torch.flip(word.int(), [0]), 0).values, [0]).bool()  # word at >= i
        later_word = torch.cat([later_word[1:], later_word.new_zeros(1)])  # a word strictly after i
        return ~later_word & (torch.arange(self.slots, device=ids.device) >= self.min_length)

    def closing(self, positions: list[int], tokens: list[int], open_: torch.Tensor) -> list[int]:
        """The slots still open after the first slot that took the empty token this step (none if none
        did), those chosen in this same step included: the fill ends at that slot."""
        ends = [p for p, t in zip(positions, tokens) if t == self.empty_id and p in self.positions]
        if not ends:
            return []
        # open slots after the end, and slots after it given a word in this very step
        return [p for p in range(min(ends) + 1, self.first + self.slots) if bool(open_[p])]


def _field(step: Any, name: str, default=None):
    if isinstance(step, dict):
        return step.get(name, default)
    return getattr(step, name, default)


def compact(trace: Trace, slack: SlackBlank) -> Trace:
    """The run of the story as filled: the blank's empty slots removed and later positions moved up.

    Steps keep their words (a step left with none is dropped); Trace.chosen records the slots, the
    chosen length, the model's probability of ending there (the empty token at the first empty
    slot) and, for a left-to-right fill, the probability of that exact length:
    prod over earlier slots of (1 - p(empty)) times p(empty) at the end."""
    out = trace.output_ids
    for s in trace.steps:  # closed slots are not in a step's positions: they hold the empty token
        for p in _field(s, "closed", []) or []:
            out[p] = slack.empty_id
    slots = list(slack.positions)
    empties = [p for p in slots if out[p] == slack.empty_id]
    length = slack.slots - len(empties)
    removed = set(empties)
    shift = {p: p - sum(1 for e in empties if e < p) for p in range(len(out)) if p not in removed}
    ids = [t for p, t in enumerate(trace.input_ids) if p not in removed]
    mask = [m for p, m in enumerate(trace.blank_mask) if p not in removed]
    p_empty: dict[int, float] = {}
    p_end = None
    steps = []
    for s in trace.steps:
        pos = _field(s, "positions")
        ep = _field(s, "empty_prob", []) or []
        for j, p in enumerate(pos):
            if j < len(ep) and p in slack.positions:
                p_empty[p] = ep[j]
        if empties and empties[0] in pos:
            p_end = _field(s, "probs")[pos.index(empties[0])]
        keep = [j for j, p in enumerate(pos) if p not in removed]
        if not keep:
            continue
        steps.append(_subset(s, keep, [shift[pos[j]] for j in keep]))
    spans = None if trace.spans is None else [
        [shift[p] for p in sp if p not in removed] for sp in trace.spans]
    chosen = {"slots": slack.slots, "length": length, "p_end": p_end}
    before = [p_empty.get(p) for p in slots[:length]]
    if p_end is not None and _one_slot_a_step_in_order(trace.steps, slots[:length + 1]):
        chosen["p_length"] = math.prod(1 - v for v in before) * p_end
    return Trace(ids, mask, steps, trace.context, spans, chosen=chosen)


def _one_slot_a_step_in_order(steps, slots: list[int]) -> bool:
    """True when these slots were decided left to right, one per step, each seeing the ones before:
    only then is prod(1 - p_empty) x p_end the probability of exactly that length."""
    seen = [p for s in steps for p in _field(s, "positions") if p in slots]
    alone = all(len([p for p in _field(s, "positions") if p in slots]) <= 1 for s in steps)
    return alone and seen == slots


def _subset(step: Any, keep: list[int], positions: list[int]):
    """The step with only the entries `keep` (per-position lists cut alike), at new positions."""
    per_pos = ("token_ids", "tokens", "probs", "alternatives", "entropy", "excluded_mass", "empty_prob")
    if isinstance(step, dict):
        new = dict(step)
        for k in per_pos:
            if new.get(k):
                new[k] = [new[k][j] for j in keep]
        new["positions"], new["closed"] = positions, []
        return new
    vals = {k: [getattr(step, k)[j] for j in keep] for k in per_pos if getattr(step, k, None)}
    return replace(step, positions=positions, closed=[], **vals)
