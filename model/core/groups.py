"""Groupings: group ids <-> attention masks, inference orders, and training samplers.

A grouping assigns every position i an integer g(i); groups are generated in increasing g and
the positions of one group in parallel (docs/DESIGN.md, "The factorization"). This file holds:

- the two masks of the two-stream forward, built from group ids (no Python loop over positions):
      content_mask[i, j] = g(j) <= g(i)      query_mask[i, j] = g(j) < g(i)
  with the BOS at position 0 in group BOS_GROUP (below every real group) and padding invisible;
- the fixed inference orders of Algorithm 1 (left-to-right, right-to-left, random, outside-in,
  custom), which turn the blank positions into a list of groups;
- the training samplers of the progressive curriculum (AR, contiguous, random groups, and the
  patterns inference uses), each drawing one grouping for one sequence of n real tokens.

Nothing here touches a model; everything is plain tensors and lists.
"""
from __future__ import annotations

import random as _random
from typing import Callable, Sequence

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


# ----------------------------------------------------------------------------------------------
# training samplers: n real tokens -> (n,) group ids (the BOS is added by the model)

def sample_ar(n: int, rng: _random.Random) -> torch.Tensor:
    """Stage 1: singleton groups, left to right (ordinary AR)."""
    return torch.arange(n)


def sample_contiguous(n: int, rng: _random.Random, size: int = 2) -> torch.Tensor:
    """Stage 2: contiguous groups of `size`, left to right."""
    return torch.arange(n) // size


def sample_random_groups(n: int, rng: _random.Random, lo: int = 4, hi: int = 8) -> torch.Tensor:
    """Stage 3: a random permutation of the positions cut into groups of random size in [lo, hi]."""
    perm = list(range(n))
    rng.shuffle(perm)
    g = torch.empty(n, dtype=torch.long)
    i = k = 0
    while i < n:
        s = rng.randint(lo, hi)
        g[torch.tensor(perm[i:i + s])] = k
        i, k = i + s, k + 1
    return g


def sample_span_order(n: int, rng: _random.Random, lo: int = 1, hi: int = 8) -> torch.Tensor:
    """Stage 3: contiguous spans of random length in [lo, hi], one group per span, random span order."""
    cuts, i = [], 0
    while i < n:
        s = rng.randint(lo, hi)
        cuts.append((i, min(n, i + s)))
        i += s
    order = list(range(len(cuts)))
    rng.shuffle(order)
    g = torch.empty(n, dtype=torch.long)
    for k, c in zip(order, cuts):
        g[c[0]:c[1]] = k
    return g


def sample_infill(n: int, rng: _random.Random, context: str = "block") -> torch.Tensor:
    """Stage 3, the pattern inference uses: visible text first (one block, or causal singletons),
    then the blanks in groups drawn from the fixed inference orders, group size 1, 2 or 4.

    Blanks: 1 to 4 spans covering between 5% and 50% of the tokens.
    """
    n_spans = rng.randint(1, 4)
    budget = max(1, int(n * rng.uniform(0.05, 0.5)))
    blanks: set[int] = set()
    for _ in range(n_spans):
        length = max(1, budget // n_spans)
        start = rng.randrange(0, max(1, n - length))
        blanks.update(range(start, min(n, start + length)))
    blanks_l = sorted(blanks)
    strategy = rng.choice(("left_to_right", "right_to_left", "random", "outside_in"))
    groups = fixed_order(strategy, blanks_l, rng.choice((1, 2, 4)), seed=rng.randrange(1 << 30))
    visible = [p for p in range(n) if p not in blanks]
    # reuse the inference builder on a BOS-first layout, then drop the BOS slot
    g = group_ids_from_order(n + 1, [0] + [p + 1 for p in visible],
                             [[p + 1 for p in grp] for grp in groups], context)[1:]
    return g - int(g.min())  # ids start at 0


def sample_mix(n: int, rng: _random.Random, infill: float = 0.45) -> torch.Tensor:
    """Stage 3 mixture: random groups (size 4-8), span order, and both infilling patterns.

    `infill` is the share of the infilling patterns (block context twice as often as causal); the
    rest is random groups and span order, 7:4. The default 0.45 gives 0.35 / 0.20 / 0.30 / 0.15.
    """
    pick = rng.random()
    rest = 1.0 - infill
    if pick < rest * 7 / 11:
        return sample_random_groups(n, rng)
    if pick < rest:
        return sample_span_order(n, rng)
    if pick < rest + infill * 2 / 3:
        return sample_infill(n, rng, "block")
    return sample_infill(n, rng, "causal")


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ar": sample_ar,
    "contiguous": sample_contiguous,
    "random": sample_random_groups,
    "span_order": sample_span_order,
    "infill": sample_infill,
    "mix": sample_mix,
}


def make_sampler(spec: str) -> Callable[[int, _random.Random], torch.Tensor]:
    """A sampler from a spec string: 'ar', 'contiguous:4', 'random:4-8', 'span_order:1-8',
    'infill', 'infill:causal', 'mix', 'mix:0.7' (infilling share)."""
    name, _, arg = spec.partition(":")
    if name not in SAMPLERS:
        raise ValueError(f"unknown grouping sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    fn = SAMPLERS[name]
    if not arg:
        return fn
    if name == "contiguous":
        size = int(arg)
        if size < 1:
            raise ValueError(f"contiguous group size must be >= 1; got {spec!r}")
        return lambda n, rng: fn(n, rng, size)
    if name in ("random", "span_order"):
        lo, _, hi = arg.partition("-")
        lo, hi = int(lo), int(hi or lo)
        if not 1 <= lo <= hi:  # a size of 0 would never advance through the sequence
            raise ValueError(f"group sizes must satisfy 1 <= lo <= hi; got {spec!r}")
        return lambda n, rng: fn(n, rng, lo, hi)
    if name == "infill":
        return lambda n, rng: fn(n, rng, arg)
    if name == "mix":
        share = float(arg)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"mix:P takes the infilling share P in [0, 1]; got {spec!r}")
        return lambda n, rng: fn(n, rng, share)
    raise ValueError(f"sampler {name!r} takes no argument; got {spec!r}")
