"""Scoring filled blanks: the one function that turns a grouping into blank log-probabilities.

    score_blanks(model, ids, blank_mask)                   one blank token at a time, left to right
    score_blanks(model, ids, blank_mask, groups=[[..]..])  the groups a run took (Trace.groups())
    score_fills(model, [(ids, blank_mask), ...])           what candidate fills are ranked by (FillScores)
    blanks_logp(model, [(ids, blank_mask), ...])           each filled row's exact log p(blanks | visible text)

The visible text is the context (group 0 with the default "block" context grouping, as decoding
encodes it); the blank tokens follow in `groups`. With singleton groups the sum is the exact
log p(blanks | visible text); otherwise the group-factorized likelihood (docs/DESIGN.md, "The
factorization"). The app's left-to-right score, the evaluation's reference NLL and the metrics'
infilling NLL all call this function. Rows of a batch are scored together when they share a blank
layout (`by_layout`), one forward per layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from .groups import group_ids_from_order


@torch.no_grad()
def score_blanks(model, input_ids, blank_mask, groups: Sequence[Sequence[int]] | None = None,
                 context: str = "block") -> torch.Tensor:
    """log p of every blank token, in position order: (L,) for ids (T,), (B, L) for ids (B, T).

    All rows share blank_mask (T,) and the grouping. groups: lists of blank positions in
    generation order (default: each blank alone, left to right), covering every blank once.
    """
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    single = ids.dim() == 1
    ids = ids[None] if single else ids
    mask = torch.as_tensor(blank_mask, dtype=torch.bool).flatten()
    if mask.numel() != ids.shape[1]:
        raise ValueError(f"blank_mask has {mask.numel()} entries for {ids.shape[1]} tokens; give one per token")
    blanks = mask.nonzero().flatten().tolist()
    if not blanks:
        raise ValueError("there is no blank to score")
    groups = [[p] for p in blanks] if groups is None else groups
    visible = (~mask).nonzero().flatten().tolist()
    g = group_ids_from_order(ids.shape[1], visible, groups, context)  # (T,)
    dev = model.device
    pos = torch.tensor(blanks, device=dev).expand(ids.shape[0], -1)  # (B, L): the query rows needed
    out = model.token_logprobs(ids.to(dev), g.expand_as(ids).to(dev), positions=pos)  # (B, L)
    return out[0] if single else out


@dataclass
class FillScores:
    """The log-likelihoods a candidate fill is ranked by (nats; higher is more likely).

    story      log p(whole sequence), left to right, exact
    fill_left  log p(fill | left text), its share of `story`
    right      log p(text right of the first blank | left text, fill), left to right, exact: the
               same tokens at every fill length, so comparable across lengths
    both       log p(fill | text on both sides), A3's visible-block context, fill left to right, exact
    n_fill     tokens in the fill
    """
    story: float
    fill_left: float
    right: float
    both: float
    n_fill: int


def by_layout(rows: Sequence[tuple]) -> Iterator[tuple[torch.Tensor, list[int], torch.Tensor]]:
    """Rows [(ids (T,), blank_mask (T,)), ...] grouped by blank layout, each group stacked:
    yields (blank_mask (T,) bool, the rows' indices, ids (R, T)), so one forward scores a group."""
    groups: dict[tuple, list[int]] = {}
    for i, (_, mask) in enumerate(rows):
        groups.setdefault(tuple(torch.as_tensor(mask, dtype=torch.bool).tolist()), []).append(i)
    for key, idx in groups.items():
        yield torch.tensor(key), idx, torch.stack([torch.as_tensor(rows[i][0], dtype=torch.long) for i in idx])


@torch.no_grad()
def blanks_logp(model, rows: Sequence[tuple]) -> list[float]:
    """log p(blanks | visible text) of filled rows [(ids (T,), blank_mask (T,)), ...]: score_blanks'
    default grouping (one blank token at a time, left to right), exact, on the same scale for every
    order a row was decoded in."""
    out = [0.0] * len(rows)
    for mask, idx, ids in by_layout(rows):
        lp = score_blanks(model, ids, mask).reshape(len(idx), -1).sum(-1)  # (R,)
        for i, v in zip(idx, lp.tolist()):
            out[i] = v
    return out


@torch.no_grad()
def score_fills(model, rows: Sequence[tuple]) -> list[FillScores]:
    """FillScores of filled sequences [(ids (T,), blank_mask (T,)), ...]: two forwards per group of
    rows that share a layout (one left to right over every token, one with both sides visible)."""
    out: list[FillScores | None] = [None] * len(rows)
    for mask, idx, ids in by_layout(rows):  # ids (R, T)
        T, dev = ids.shape[1], model.device
        l2r = model.token_logprobs(ids.to(dev), torch.arange(T, device=dev).expand(len(idx), T)).cpu()  # (R, T)
        both = score_blanks(model, ids, mask).cpu().reshape(len(idx), -1)  # (R, L)
        first = int(mask.nonzero()[0])
        right = (~mask) & (torch.arange(T) > first)
        for j, i in enumerate(idx):
            out[i] = FillScores(story=float(l2r[j].sum()), fill_left=float(l2r[j, mask].sum()),
                                right=float(l2r[j, right].sum()), both=float(both[j].sum()), n_fill=int(mask.sum()))
    return out
