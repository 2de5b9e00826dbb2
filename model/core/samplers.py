"""Training samplers of the progressive curriculum: each draws one grouping (group ids) for one
sequence of n real tokens (the BOS is added by the model).

    sample_ar, sample_contiguous                 stages 1-2: left to right, singletons or blocks
    sample_random_groups, sample_span_order      stage 3: any order
    sample_infill, sample_user_blanks            the patterns inference uses (visible text first)
    sample_rightward                             user blanks, and some rows read right to left
    sample_mix                                   the stage-3 mixture
    make_sampler("user:3-24:ends")               a sampler from a recipe's spec string

The groupings they build reuse the inference orders of groups.py, so training covers exactly
the patterns decoding produces (docs/DESIGN.md, "Training: progressive adaptation").
"""
from __future__ import annotations

import random as _random
from typing import Callable

import torch

from .groups import fixed_order, group_ids_from_order


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


# the orders a user-shaped blank is decoded in, and their weights: "plain" as the app offers them,
# "ends" with the orders that start next to the text after the blank (right to left, outside-in) twice as often
USER_ORDERS = {"plain": {"left_to_right": 0.4, "right_to_left": 0.2, "outside_in": 0.2, "random": 0.2},
               "ends": {"left_to_right": 0.2, "right_to_left": 0.35, "outside_in": 0.35, "random": 0.1}}


def sample_user_blanks(n: int, rng: _random.Random, boundaries: torch.Tensor | None = None,
                       lo: int = 3, hi: int = 24, orders: str = "plain", max_spans: int = 3,
                       margin: int = 16) -> torch.Tensor:
    """Blanks shaped like a user's: 1 to `max_spans` spans of lo-hi tokens, at least `margin`
    tokens from either end of the row and 4 apart, the visible text as one block first, then
    the blanks in one of the app's fixed orders (USER_ORDERS[orders]), group size 1 (or 2, one
    time in four).

    boundaries: (n,) True where a clause or sentence starts; with them, half of the spans are a
    whole clause or sentence (from one start to the next, when that is lo-hi tokens long).
    """
    room = n - 2 * margin
    if room < lo:
        raise ValueError(f"user blanks need rows of at least {2 * margin + lo + 1} tokens; got {n + 1}")
    starts = [] if boundaries is None else boundaries.nonzero().flatten().tolist()
    taken: list[tuple[int, int]] = []
    for _ in range(rng.randint(1, max_spans)):
        for _try in range(8):
            span = None
            if starts and rng.random() < 0.5:  # a whole clause or sentence
                i = rng.randrange(len(starts) - 1) if len(starts) > 1 else 0
                a, b = starts[i], starts[i + 1] if i + 1 < len(starts) else n
                if lo <= b - a <= hi:
                    span = (a, b)
            if span is None:
                length = rng.randint(lo, min(hi, room))
                a = rng.randint(margin, n - margin - length)
                span = (a, a + length)
            a, b = span
            if a >= margin and b <= n - margin and all(b + 4 <= c or d + 4 <= a for c, d in taken):
                taken.append(span)
                break
    if not taken:  # every try collided with the margins: one plain span in the middle
        length = rng.randint(lo, min(hi, room))
        taken.append((margin, margin + length))
    blanks = sorted(p for a, b in taken for p in range(a, b))
    weights = USER_ORDERS[orders]
    strategy = rng.choices(list(weights), weights=list(weights.values()))[0]
    groups = fixed_order(strategy, blanks, 2 if rng.random() < 0.25 else 1, seed=rng.randrange(1 << 30))
    blank_set = set(blanks)
    visible = [p for p in range(n) if p not in blank_set]
    g = group_ids_from_order(n + 1, [0] + [p + 1 for p in visible], [[p + 1 for p in grp] for grp in groups])[1:]
    return g - int(g.min())


sample_user_blanks.wants_boundaries = True


def sample_rightward(n: int, rng: _random.Random, boundaries: torch.Tensor | None = None,
                     share: float = 0.25) -> torch.Tensor:
    """User-shaped blanks (sample_user_blanks, 3-24 tokens), and with probability `share` the whole
    row right to left, one token at a time: every prediction of such a row reads only the text
    after it, the skill the blanks' last tokens need most, on every position of the row."""
    if rng.random() < share:
        return torch.arange(n - 1, -1, -1)
    return sample_user_blanks(n, rng, boundaries)


sample_rightward.wants_boundaries = True


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
    "user": sample_user_blanks,
    "rightward": sample_rightward,
}


def make_sampler(spec: str) -> Callable[[int, _random.Random], torch.Tensor]:
    """A sampler from a spec string: 'ar', 'contiguous:4', 'random:4-8', 'span_order:1-8',
    'infill', 'infill:causal', 'mix', 'mix:0.7' (infilling share), 'user', 'user:3-24', 'user:3-24:ends'
    (blanks shaped like a user's, sample_user_blanks), 'rightward:0.25' (sample_rightward)."""
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
    if name == "user":  # user:LO-HI[:ORDERS]
        lengths, _, orders = arg.partition(":")
        lo, _, hi = lengths.partition("-")
        lo, hi, orders = int(lo), int(hi or lo), orders or "plain"
        if not 1 <= lo <= hi or orders not in USER_ORDERS:
            raise ValueError(f"user blanks take user:LO-HI[:{'|'.join(USER_ORDERS)}] with 1 <= LO <= HI; got {spec!r}")
        user = lambda n, rng, boundaries=None: fn(n, rng, boundaries, lo, hi, orders)  # noqa: E731
        user.wants_boundaries = True
        return user
    if name == "rightward":  # rightward:P
        share = float(arg)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"rightward:P takes the share P in [0, 1] of rows read right to left; got {spec!r}")
        right = lambda n, rng, boundaries=None: fn(n, rng, boundaries, share)  # noqa: E731
        right.wants_boundaries = True
        return right
    if name == "mix":
        share = float(arg)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"mix:P takes the infilling share P in [0, 1]; got {spec!r}")
        return lambda n, rng: fn(n, rng, share)
    raise ValueError(f"sampler {name!r} takes no argument; got {spec!r}")
