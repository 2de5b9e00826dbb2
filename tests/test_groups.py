"""Groupings: masks from group ids, inference orders on hand-computed examples, training samplers."""
from __future__ import annotations

import random

import pytest
import torch

from model.core.groups import BOS_GROUP, PAD_GROUP, fixed_order, group_ids_from_order, group_mask, prepare_group_ids, spans_of
from model.core.samplers import SAMPLERS, make_sampler

BLANKS = [3, 4, 5, 9, 10]


def _ranks(g: torch.Tensor) -> list[int]:
    """Group ids up to relabelling: only their order matters to the masks."""
    return torch.unique(g, return_inverse=True)[1].tolist()


def _groups(g: torch.Tensor) -> dict[int, list[int]]:
    """id -> positions holding it."""
    out: dict[int, list[int]] = {}
    for p, k in enumerate(g.tolist()):
        out.setdefault(k, []).append(p)
    return out


# ----------------------------------------------------------------------------------------------
# masks


def test_group_mask_matches_definition():
    """content: g(j) <= g(i); query: g(j) < g(i); invalid keys hidden from both."""
    g = torch.tensor([[-1, 2, 0, 2, 1]])
    valid = torch.tensor([[True, True, True, False, True]])
    for strict in (False, True):
        m = group_mask(g, g, strict, valid)
        assert m.shape == (1, 1, 5, 5), f"mask shape {tuple(m.shape)}, expected (B, 1, R, S)"
        for i in range(5):
            for j in range(5):
                want = (g[0, j] < g[0, i] if strict else g[0, j] <= g[0, i]) and bool(valid[0, j])
                assert bool(m[0, 0, i, j]) == bool(want), f"strict={strict}: mask[{i}, {j}] should be {bool(want)}"


def test_prepare_group_ids_bos_padding_and_inputs_untouched():
    g = torch.tensor([[5, 0, 1, 1], [7, 2, 0, -3]])
    am = torch.tensor([[True, True, True, True], [True, True, True, False]])
    g0, am0 = g.clone(), am.clone()
    out = prepare_group_ids(g, am)
    assert out[:, 0].tolist() == [BOS_GROUP, BOS_GROUP], "position 0 must become the BOS group"
    assert out[1, 3].item() == PAD_GROUP, "padding must get PAD_GROUP (even with a negative id given)"
    assert out[0, 1:].tolist() == [0, 1, 1] and out[1, 1:3].tolist() == [2, 0], "real ids must pass through"
    assert torch.equal(g, g0) and torch.equal(am, am0), "prepare_group_ids modified its inputs"


# ----------------------------------------------------------------------------------------------
# inference orders


def test_spans_of():
    assert spans_of([3, 4, 5, 9, 10, 15]) == [[3, 4, 5], [9, 10], [15]], "three maximal runs expected"
    assert spans_of([10, 3, 9, 4]) == [[3, 4], [9, 10]], "unsorted input must be sorted first"
    assert spans_of([]) == [], "no positions, no spans"


@pytest.mark.parametrize("strategy, size, expected", [
    ("left_to_right", 1, [[3], [4], [5], [9], [10]]),
    ("left_to_right", 2, [[3, 4], [5, 9], [10]]),
    ("right_to_left", 1, [[10], [9], [5], [4], [3]]),
    ("right_to_left", 2, [[10, 9], [5, 4], [3]]),
    # spans [3,4,5] and [9,10]: edges 3, 9, then 5, 10, then the middle 4
    ("outside_in", 1, [[3], [9], [5], [10], [4]]),
    ("outside_in", 2, [[3, 9], [5, 10], [4]]),
    ("outside_in", 3, [[3, 9, 5], [10, 4]]),
])
def test_fixed_order_examples(strategy, size, expected):
    got = fixed_order(strategy, BLANKS, size)
    assert got == expected, f"{strategy} with group size {size}: got {got}, expected {expected}"
    assert fixed_order(strategy, BLANKS[::-1], size) == expected, "blank order in the input must not matter"


def test_fixed_order_random_and_custom():
    a = fixed_order("random", BLANKS, 2, seed=7)
    assert a == fixed_order("random", BLANKS, 2, seed=7), "the random order must be reproducible for a seed"
    assert sorted(p for grp in a for p in grp) == BLANKS, f"random order is not a permutation of the blanks: {a}"
    assert [len(grp) for grp in a] == [2, 2, 1], f"random order must be cut into groups of 2: {a}"
    orders = {tuple(p for grp in fixed_order("random", BLANKS, 1, seed=s) for p in grp) for s in range(10)}
    assert len(orders) > 1, "different seeds never changed the random order"
    custom = [[9], [3, 10], [5, 4]]
    assert fixed_order("custom", BLANKS, 1, custom=custom) == custom, "custom groups must come back as given"
    assert fixed_order("custom", BLANKS, 4, custom=((9,), (3, 10), (5, 4))) == custom, "custom ignores group_size"


def test_outside_in_single_token_spans():
    assert fixed_order("outside_in", [2, 7, 8], 1) == [[2], [7], [8]], "one-token spans go first, then the next edge"


@pytest.mark.parametrize("context", ["block", "causal"])
def test_group_ids_from_order(context):
    """T=8, visible BOS,1,2,5,7; blanks 3,4,6 filled as [4] then [3, 6]."""
    g = group_ids_from_order(8, [0, 1, 2, 5, 7], [[4], [3, 6]], context)
    assert g[0].item() == BOS_GROUP, "the BOS must get BOS_GROUP"
    if context == "block":
        # BOS < visible block < {4} < {3, 6}
        expected = [0, 1, 1, 3, 2, 1, 3, 1]
    else:
        # BOS < 1 < 2 < 5 < 7 < {4} < {3, 6}
        expected = [0, 1, 2, 6, 5, 3, 6, 4]
    assert _ranks(g) == expected, f"{context}: group order {_ranks(g)}, expected {expected}"


def test_group_ids_from_order_refuses_gaps_and_unknown_context():
    with pytest.raises(ValueError, match="neither visible nor in a group"):
        group_ids_from_order(6, [0, 1, 2], [[3]])
    with pytest.raises(ValueError, match="choose 'block' or 'causal'"):
        group_ids_from_order(4, [0, 1], [[2, 3]], "bidirectional")


# ----------------------------------------------------------------------------------------------
# training samplers

SPECS = ["ar", "contiguous:2", "contiguous:4", "random:4-8", "span_order:1-8", "infill", "infill:causal", "mix"]
SIZES = [1, 2, 3, 7, 16, 33, 64]


def _check_valid(g: torch.Tensor, n: int, spec: str):
    assert g.shape == (n,), f"{spec}, n={n}: shape {tuple(g.shape)}"
    assert g.dtype == torch.long, f"{spec}: group ids must be int64, got {g.dtype}"
    assert bool((g >= 0).all()), f"{spec}, n={n}: negative group id in {g.tolist()}"
    assert g.max().item() < max(n, 1) * 2, f"{spec}, n={n}: implausible id {g.max().item()} (uninitialised?)"


@pytest.mark.parametrize("spec", SPECS)
def test_sampler_gives_valid_grouping(spec):
    sampler = make_sampler(spec)
    for n in SIZES:
        for seed in range(8):
            g = sampler(n, random.Random(seed))
            _check_valid(g, n, spec)
            assert torch.equal(g, sampler(n, random.Random(seed))), f"{spec}: not reproducible for seed {seed}"


@pytest.mark.parametrize("size", [2, 4])
def test_contiguous_sampler(size):
    sampler = make_sampler(f"contiguous:{size}")
    for n in SIZES:
        g = sampler(n, random.Random(0))
        groups = _groups(g)
        assert sorted(groups) == list(range(len(groups))), f"contiguous:{size}, n={n}: ids are not 0..K-1"
        starts = [groups[k][0] for k in sorted(groups)]
        assert starts == sorted(starts), f"contiguous:{size}, n={n}: groups not in left-to-right order"
        for k, pos in groups.items():
            assert pos == list(range(pos[0], pos[0] + len(pos))), f"group {k} is not contiguous: {pos}"
            if k < len(groups) - 1:
                assert len(pos) == size, f"contiguous:{size}, n={n}: group {k} has {len(pos)} tokens"
            else:
                assert 1 <= len(pos) <= size, f"contiguous:{size}, n={n}: last group has {len(pos)} tokens"


def test_ar_sampler():
    for n in SIZES:
        assert make_sampler("ar")(n, random.Random(0)).tolist() == list(range(n)), "ar must be singletons in order"


def test_random_groups_sizes():
    sampler = make_sampler("random:4-8")
    shuffled = 0
    for n in SIZES:
        for seed in range(8):
            groups = _groups(sampler(n, random.Random(seed)))
            last = max(groups)
            assert sorted(groups) == list(range(last + 1)), f"random:4-8, n={n}: ids are not 0..K-1"
            for k, pos in groups.items():
                ok = 4 <= len(pos) <= 8 or (k == last and 1 <= len(pos) <= 8)
                assert ok, f"random:4-8, n={n}, seed={seed}: group {k} has {len(pos)} tokens"
            shuffled += any(pos != list(range(pos[0], pos[0] + len(pos))) for pos in groups.values())
    assert shuffled > 0, "random groups were always contiguous runs; positions are not shuffled"


def test_span_order_sizes():
    sampler = make_sampler("span_order:1-8")
    reordered = 0
    for n in SIZES:
        for seed in range(8):
            groups = _groups(sampler(n, random.Random(seed)))
            assert sorted(groups) == list(range(len(groups))), f"span_order, n={n}: ids are not 0..K-1"
            for k, pos in groups.items():
                assert pos == list(range(pos[0], pos[0] + len(pos))), f"span_order: group {k} not contiguous: {pos}"
                assert 1 <= len(pos) <= 8, f"span_order, n={n}: span {k} has {len(pos)} tokens"
            starts = [groups[k][0] for k in sorted(groups)]
            reordered += starts != sorted(starts)
    assert reordered > 0, "span_order never put the spans out of position order"


@pytest.mark.parametrize("n", [4, 7, 16, 33, 64])
def test_infill_sampler(n):
    """block: group 0 is exactly the visible tokens, blanks come after in groups of <= 4;
    causal (same draws): the visible tokens are singletons in position order, then the blanks."""
    for seed in range(10):
        block = make_sampler("infill")(n, random.Random(seed))
        visible = [p for p in range(n) if block[p] == 0]
        blanks = [p for p in range(n) if block[p] > 0]
        assert visible, f"n={n}, seed={seed}: no visible token in {block.tolist()}"
        assert 1 <= len(blanks) <= max(4, n // 2), f"n={n}, seed={seed}: {len(blanks)} blanks of {n}"
        for k, pos in _groups(block).items():
            assert k == 0 or len(pos) <= 4, f"n={n}: blank group {k} has {len(pos)} tokens"
        causal = make_sampler("infill:causal")(n, random.Random(seed))
        vis_ids = causal[visible].tolist()
        assert vis_ids == list(range(len(visible))), f"n={n}: causal context ids {vis_ids} are not 0..{len(visible) - 1}"
        assert bool((causal[blanks] >= len(visible)).all()), "causal: blanks must come after every visible token"
        assert _ranks(causal[blanks]) == _ranks(block[blanks]), "block and causal must order the blanks alike"


def test_mix_draws_every_pattern():
    """Over many draws the mixture produces random groups, spans and both infill patterns."""
    kinds = set()
    for seed in range(200):
        g = make_sampler("mix")(32, random.Random(seed))
        groups = _groups(g)
        sizes = sorted(len(p) for p in groups.values())
        contiguous = all(p == list(range(p[0], p[0] + len(p))) for p in groups.values())
        if len(groups[0]) >= 16 and (0 in g.tolist()):
            kinds.add("infill_block")
        elif sizes.count(1) >= 16:
            kinds.add("infill_causal")
        elif contiguous:
            kinds.add("span_order")
        else:
            kinds.add("random")
    assert kinds == {"infill_block", "infill_causal", "span_order", "random"}, f"mix drew only {kinds}"


def test_samplers_registry_and_bad_specs():
    assert set(SAMPLERS) == {"ar", "contiguous", "random", "span_order", "infill", "mix", "user", "rightward"}, "unexpected registry"
    with pytest.raises(ValueError, match="user:LO-HI"):
        make_sampler("user:3-24:sideways")
    with pytest.raises(ValueError, match="unknown grouping sampler"):
        make_sampler("shuffled")
    with pytest.raises(ValueError, match="takes no argument"):
        make_sampler("ar:3")
    with pytest.raises(ValueError, match=">= 1"):
        make_sampler("contiguous:0")
    with pytest.raises(ValueError, match="1 <= lo <= hi"):
        make_sampler("random:0-0")  # would loop forever
    with pytest.raises(ValueError, match="1 <= lo <= hi"):
        make_sampler("span_order:8-4")


def test_mix_share_argument():
    """mix:P sets the infilling share: P=0.45 is the plain mix draw for draw; P=1 gives only the
    infilling patterns (a visible block or causal singletons, then the blanks); P=0 never does."""
    for seed in range(50):
        assert torch.equal(make_sampler("mix:0.45")(40, random.Random(seed)), make_sampler("mix")(40, random.Random(seed))), \
            f"mix:0.45 should draw exactly what mix draws (seed {seed})"
    def after_pick(seed):  # the mixture's rng once it has drawn which pattern to use
        rng = random.Random(seed)
        rng.random()
        return rng

    def is_infill(g, seed):
        return any(torch.equal(g, make_sampler(spec)(40, after_pick(seed))) for spec in ("infill", "infill:causal"))

    for s in range(40):
        g = make_sampler("mix:1")(40, random.Random(s))
        assert is_infill(g, s), f"mix:1 should draw an infilling pattern (seed {s}): {g.tolist()}"
        assert not is_infill(make_sampler("mix:0")(40, random.Random(s)), s), \
            f"mix:0 should never draw an infilling pattern (seed {s})"
    for bad in ("mix:1.5", "mix:-0.1"):
        with pytest.raises(ValueError, match="infilling share"):
            make_sampler(bad)
