"""Blanks with slack: the training rows that teach the model where a fill of unknown length ends.

A user who writes `[[?]]` gives the model M slots, more than the fill needs. Training shows it
such blanks: a span of L tokens of real text is followed by M - L copies of a reserved *empty*
token (for SmolLM2 `<repo_name>`: a token with an embedding row of its own, loop.empty_token_id), and
the text after the blank comes after all M slots. The
slots are decoded like any blank (mostly left to right) with the loss on every slot, so the
model learns p(empty | slot, both sides): a fill ends at the first slot that gets the empty token,
and the probability it gives that token is how sure it is of the length (docs/DESIGN.md,
"Blank lengths the model chooses").

    slack_row(row, rng, empty_id, starts)      one row (T,) -> (ids (T,), group ids (T,))
    apply_slack(ids, g, share, rng, ...)       a batch: `share` of its rows replaced by slack rows (+ slots)
    fill_ends(ids, empty_id)                   (B, T) the slot where each slack blank's fill ends

M is drawn first (uniform in [min_slots, max_slots]) and the span's length L given M (whole
clauses or sentences that fit, else uniform in [1, M]), so that what the model learns of the
length given the slots is the data's own length prior cut at M, as a user's `[[a-b]]` asks.
"""
from __future__ import annotations

import random

import torch

from model.core.groups import fixed_order, group_ids_from_order

# the orders a slack blank is decoded in during training: mostly left to right, as the app does
SLACK_ORDERS = {"left_to_right": 0.6, "right_to_left": 0.15, "outside_in": 0.15, "random": 0.1}


def slack_row(row: torch.Tensor, rng: random.Random, empty_id: int, starts: torch.Tensor | None = None,
              min_slots: int = 4, max_slots: int = 48, margin: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A BOS-first row (T,) with one blank of M slots: L real tokens then M - L empty tokens,
    the rest of the row shifted right by M - L (its end cut to keep T). Returns (ids (T,), g (T,)):
    the visible text in group 0, the slots after it in one of SLACK_ORDERS, one per group.
    starts: (T,) True where a clause or sentence starts (steps.clause_starts)."""
    T = row.shape[0]
    top = min(max_slots, T - 1 - 2 * margin)
    if top < min_slots:
        raise ValueError(f"slack blanks need rows of at least {2 * margin + min_slots + 1} tokens; got {T}")
    M = rng.randint(min_slots, top)
    a = rng.randint(1 + margin, T - margin - M)  # the first slot (after the BOS and the left margin)
    L = None
    if starts is not None and rng.random() < 0.5:  # a whole clause or sentence that fits in M
        cands = [p for p in starts.nonzero().flatten().tolist() if 1 + margin <= p <= T - margin - M]
        rng.shuffle(cands)
        for p in cands[:8]:
            nxt = [q for q in starts[p + 1:p + M + 1].nonzero().flatten().tolist()]
            if nxt:
                a, L = p, nxt[0] + 1
                break
    if L is None:
        L = rng.randint(1, M)
    ids = torch.cat([row[:a + L], torch.full((M - L,), empty_id, dtype=row.dtype), row[a + L:]])[:T]
    slots = list(range(a, a + M))
    strategy = rng.choices(list(SLACK_ORDERS), weights=list(SLACK_ORDERS.values()))[0]
    groups = fixed_order(strategy, slots, 1, seed=rng.randrange(1 << 30))
    visible = [p for p in range(T) if not a <= p < a + M]
    return ids, group_ids_from_order(T, visible, groups).clamp(min=0)


def apply_slack(ids: torch.Tensor, g: torch.Tensor, share: float, rng: random.Random, empty_id: int,
                starts: torch.Tensor | None = None, max_slots: int = 48
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, g, slots) of a batch (B, T) with `share` of its rows (drawn independently) made slack
    rows; slots (B, T) is True at their blanks' slots (where the slack marker goes, a3.slack_marker)."""
    slots = torch.zeros_like(ids, dtype=torch.bool)
    if share <= 0:
        return ids, g, slots
    ids, g = ids.clone(), g.clone()
    for r in range(ids.shape[0]):
        if rng.random() < share:
            ids[r], g[r] = slack_row(ids[r], rng, empty_id, None if starts is None else starts[r],
                                     max_slots=max_slots)
            slots[r] = g[r] > 0
    return ids, g, slots


def fill_ends(ids: torch.Tensor, empty_id: int) -> torch.Tensor:
    """(B, T) True at each slack blank's first empty slot: the one decision in the row of where the
    fill ends (the empties after it follow from it). The stage's end_weight weighs its loss."""
    empty = ids == empty_id
    before = torch.zeros_like(empty)
    before[:, 1:] = empty[:, :-1]
    return empty & ~before
