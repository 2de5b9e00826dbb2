"""Groupings: group ids <-> attention masks, inference orders, and training samplers.

A grouping assigns every position i an integer g(i); groups are generated in increasing g and
the positions of one group in parallel (docs/DESIGN.md, "The factorization"). This file holds:

- the two masks of the two-stream forward, built from group ids (no Python loop over positions):
      content_mask[i, j] = g(j) <= g(i)      query_mask[i, j] = g(j) < g(i)
  with the BOS at position 0 in group BOS_GROUP (below every real group) and padding invisible;
- the fixed inference orders of Algorithm 1 (left-to-right, right-to-left, random, outside-in,
  custom), which turn the blank positions into a list of groups;
and nothing of training: the curriculum's samplers of groupings live in samplers.py.

Nothing here touches a model; everything is plain tensors and lists.
"""
from __future__ import annotations

import random as _random
from typing import Sequence

import torch

BOS_GROUP = -1  # the BOS is group -1: seen by every query, predicted by none
PAD_GROUP = 1 << 30  # padding rows sit after everything; as keys they are masked out anyway


# ----------------------------------------------------------------------------------------------
# masks


def group_mask(key_groups: torch.Tensor, row_groups: torch.Tensor, strict: bool,
               key_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean attention mask (True = may attend) from group ids.

    key_groups: (B, S) group id of every key; row_groups: (B, R) group id of every query row;
    strict=False gives the content rule g(j) <= g(i), strict=True the query rule g(j) < g(i).
    key_valid: (B, S) False for padding keys. Returns (B, 1, R, S), broadcast over heads.
    """
    kg = key_groups[:, None, :]  # (B, 1, S)
    rg = row_groups[:, :, None]  # (B, R, 1)
    mask = kg < rg if strict else kg <= rg  # (B, R, S)
    if key_valid is not None:
        mask = mask & key_valid[:, None, :].bool()
    return mask[:, None]


def prepare_group_ids(group_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Validate (B, T) group ids of a BOS-first batch and return the ids the masks use.

    Position 0 is the BOS: its given id is ignored and replaced by BOS_GROUP. Real tokens need
    ids >= 0 (any order, any sizes, gaps allowed); padding positions get PAD_GROUP.
    """
    if group_ids.dim() != 2:
        raise ValueError(f"group_ids must have shape (batch, length); got {tuple(group_ids.shape)}")
    if group_ids.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"group_ids must be an integer tensor; got {group_ids.dtype}")
    g = group_ids.long().clone()
    # clone: .bool() of a bool mask is the caller's own tensor, which must not be edited below
    real = torch.ones_like(g, dtype=torch.bool) if attention_mask is None else attention_mask.bool().clone()
    real[:, 0] = False
    if bool((g[real] < 0).any()):
        raise ValueError("group ids of real tokens must be >= 0 (position 0 is the BOS and takes no id)")
    g[:, 0] = BOS_GROUP
    if attention_mask is not None:
        g[~attention_mask.bool()] = PAD_GROUP
    return g


# ----------------------------------------------------------------------------------------------
# inference orders (Algorithm 1): blank positions -> list of groups, each a list of positions

FIXED_ORDERS = ("left_to_right", "right_to_left", "random", "outside_in", "custom")


def spans_of(positions: Sequence[int]) -> list[list[int]]:
    """Split sorted positions into maximal runs of consecutive positions (the blank spans)."""
    spans: list[list[int]] = []
    for p in sorted(positions):
        if spans and p == spans[-1][-1] + 1:
            spans[-1].append(p)
        else:
            spans.append([p])
    return spans


def _chunk(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def fixed_order(strategy: str, blanks: Sequence[int], group_size: int = 1,
                seed: int | None = None, custom: Sequence[Sequence[int]] | None = None
                ) -> list[list[int]]:
    """The groups of a fixed grouping over the blank positions, in generation order.

    left_to_right / right_to_left: position order; random: a seeded permutation; outside_in:
    every span is filled from its two edges (next to the known text) towards its middle, the
    spans interleaved; each cut into groups of `group_size`. custom: the given groups as they
    are (group_size does not apply); they must cover every blank exactly once.
    """
    blanks = sorted(int(p) for p in blanks)
    if not blanks:
        raise ValueError("there is nothing to generate: mark at least one blank position")
    if group_size < 1:
        raise ValueError(f"group size must be >= 1; got {group_size}")
    if strategy == "custom":
        return validate_custom(custom, blanks)
    if strategy == "left_to_right":
        order = blanks
    elif strategy == "right_to_left":
        order = blanks[::-1]
    elif strategy == "random":
        order = list(blanks)
        _random.Random(seed).shuffle(order)
    elif strategy == "outside_in":
        order = _outside_in(spans_of(blanks))
    else:
        raise ValueError(f"unknown fixed order {strategy!r}; choose one of {', '.join(FIXED_ORDERS)}")
    return _chunk(order, group_size)


def _outside_in(spans: list[list[int]]) -> list[int]:
    # each span as an edge-first sequence: first, last, second, second-to-last, ...
    seqs = []
    for s in spans:
        lo, hi, seq = 0, len(s) - 1, []
        while lo <= hi:
            seq.append(s[lo])
            if hi != lo:
                seq.append(s[hi])
            lo, hi = lo + 1, hi - 1
        seqs.append(seq)
    # interleave the spans so that all of them advance together
    out = []
    for i in range(max(len(s) for s in seqs)):
        out.extend(s[i] for s in seqs if i < len(s))
    return out


def validate_custom(custom: Sequence[Sequence[int]] | None, blanks: Sequence[int]) -> list[list[int]]:
    """Check that a custom group list covers every blank exactly once; return it as lists."""
    if not custom:
        raise ValueError("a custom order needs a non-empty list of groups of blank positions")
    groups = [[int(p) for p in grp] for grp in custom]
    if any(len(grp) == 0 for grp in groups):
        raise ValueError("a custom order has an empty group; remove it")
    flat = [p for grp in groups for p in grp]
    blank_set = set(blanks)
    repeated = sorted({p for p in flat if flat.count(p) > 1})
    if repeated:
        raise ValueError(f"the custom order repeats blank position(s) {repeated}; list each blank once")
    extra = sorted(set(flat) - blank_set)
    if extra:
        raise ValueError(f"the custom order names position(s) {extra} that are not blanks")
    missing = sorted(blank_set - set(flat))
    if missing:
        raise ValueError(f"the custom order skips blank position(s) {missing}; give each blank a group")
    return groups


def group_ids_from_order(n_positions: int, visible: Sequence[int], groups: Sequence[Sequence[int]],
                         context: str = "block") -> torch.Tensor:
    """(T,) group ids of a whole decoding: the context grouping, then one group per step.

    context="block": all visible tokens form group 0 (bidirectional; the default, covered by the
    curriculum's infilling pattern). context="causal": every visible token is its own group in
    position order (the AR pattern of stage 1). Position 0 (BOS) gets BOS_GROUP.
    """
    g = torch.full((n_positions,), -2, dtype=torch.long)
    vis = torch.tensor(sorted(visible), dtype=torch.long)
    if context == "block":
        g[vis] = 0
        nxt = 1
    elif context == "causal":
        g[vis] = torch.arange(len(vis))
        nxt = len(vis)
    else:
        raise ValueError(f"unknown context grouping {context!r}; choose 'block' or 'causal'")
    for k, grp in enumerate(groups):
        g[torch.tensor(grp, dtype=torch.long)] = nxt + k
    g[0] = BOS_GROUP
    if bool((g == -2).any()):
        raise ValueError("some positions are neither visible nor in a group")
    return g
