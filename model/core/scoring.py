"""Scoring filled blanks: the one function that turns a grouping into blank log-probabilities.

    score_blanks(model, ids, blank_mask)                   one blank token at a time, left to right
    score_blanks(model, ids, blank_mask, groups=[[..]..])  the groups a run took (Trace.groups())

The visible text is the context (group 0 with the default "block" context grouping, as decoding
encodes it); the blank tokens follow in `groups`. With singleton groups the sum is the exact
log p(blanks | visible text); otherwise the group-factorized likelihood (docs/DESIGN.md, "The
factorization"). The app's left-to-right score, the evaluation's reference NLL and the metrics'
infilling NLL all call this function.
"""
from __future__ import annotations

from typing import Sequence

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
    lp = model.token_logprobs(ids.to(dev), g.expand_as(ids).to(dev))  # (B, T)
    out = lp[:, mask.to(dev)]  # (B, L)
    return out[0] if single else out
