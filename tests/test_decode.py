"""Decoding: the cache equals a full recompute, and the generator keeps its promises.

- cached decoding == the full uncached forward for the same committed prefix of groups, for every
  strategy, both context groupings, greedy and sampled; the step probabilities == token_logprobs
  under the grouping the run realised;
- visible tokens never change, every blank is filled exactly once, the commit order follows the
  strategy, one walk per step, ceil(blanks / group_size) steps, threshold mode, seeds.
"""
from __future__ import annotations

import math

import pytest
import torch

from model.core.decode import DYNAMIC_ORDERS, FIXED_ORDERS, STRATEGIES, DecodeConfig, decode, run
from model.core.sampling import SamplingConfig

T = 17
BLANKS = [3, 4, 5, 9, 10, 11, 12, 15]  # three spans, one ending next to the last token
CUSTOM = [[9, 3], [15], [4, 5, 10], [11, 12]]
GREEDY = SamplingConfig()
SAMPLED = SamplingConfig(do_sample=True, temperature=0.8, top_k=20, top_p=0.95, seed=3)


def _request(seed: int = 0, blanks=BLANKS, length: int = T):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 99, (length,), generator=gen)
    ids[0] = 0  # BOS
    mask = torch.zeros(length, dtype=torch.bool)
    mask[blanks] = True
    return ids, mask


def _cfg(strategy: str, context: str = "block", sampling: SamplingConfig = GREEDY, **kw) -> DecodeConfig:
    kw.setdefault("group_size", 2)
    kw.setdefault("exclude_special", False)  # the math tests compare with the model's own distributions
    if strategy == "custom":
        kw.setdefault("custom_groups", CUSTOM)
    return DecodeConfig(strategy=strategy, context=context, sampling=SamplingConfig(**vars(sampling)), **kw)


def _grouping(T: int, visible: list[int], groups: list[list[int]], context: str) -> torch.Tensor:
    """(T,) group ids built by hand: the context grouping, then the given groups in order."""
    g = torch.full((T,), -1)
    vis = sorted(p for p in visible if p != 0)
    for rank, p in enumerate(vis):
        g[p] = 0 if context == "block" else rank
    nxt = 1 if context == "block" else len(vis)
    for k, grp in enumerate(groups):
        for p in grp:
            g[p] = nxt + k
    assert int((g[1:] < 0).sum()) == 0, "test helper: some position has no group"
    return g


@torch.no_grad()
def _full_probs(model, ids: torch.Tensor, mask: torch.Tensor, committed: list[list[int]],
                targets: list[int], context: str) -> torch.Tensor:
    """(len(targets), V) uncached distributions at targets after the committed groups; blanks
    not yet committed and not targets sit in a later group (invisible)."""
    visible = (~mask).nonzero().flatten().tolist()
    done = {p for grp in committed for p in grp}
    rest = [p for p in mask.nonzero().flatten().tolist() if p not in done and p not in targets]
    g = _grouping(len(ids), visible, committed + [targets] + ([rest] if rest else []), context)
    return torch.softmax(model(ids[None], g[None]).logits[0, targets], -1)


def _alt_dict(step, j) -> dict[str, float]:
    return dict(step.alternatives[j])


# ----------------------------------------------------------------------------------------------
# cache == full recompute == scoring


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("context", ["block", "causal"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cached_decoding_equals_full_recompute(a3, strategy, context, sampling):
    """Same steps, same tokens, same full distributions (all 99 probabilities) within 1e-4, and
    the reported probabilities equal token_logprobs under the realised grouping."""
    ids, mask = _request()
    V = a3.config.vocab_size
    cached = run(a3, ids, mask, _cfg(strategy, context, sampling, n_alternatives=V))
    full = run(a3, ids, mask, _cfg(strategy, context, sampling, n_alternatives=V, use_cache=False))
    assert len(cached.steps) == len(full.steps), f"{len(cached.steps)} cached steps vs {len(full.steps)} recomputed"
    for sc, sf in zip(cached.steps, full.steps):
        assert sc.positions == sf.positions, f"step {sc.index}: cached commits {sc.positions}, recompute {sf.positions}"
        assert sc.token_ids == sf.token_ids, f"step {sc.index}: cached tokens {sc.token_ids}, recompute {sf.token_ids}"
        for j in range(len(sc.positions)):
            pc, pf = _alt_dict(sc, j), _alt_dict(sf, j)
            assert pc.keys() == pf.keys(), f"step {sc.index}: alternatives cover different tokens"
            diff = max(abs(pc[t] - pf[t]) for t in pc)
            assert diff <= 1e-4, f"step {sc.index}, position {sc.positions[j]}: distributions differ by {diff:.2e}"
        diff = max(abs(a - b) for a, b in zip(sc.probs, sf.probs))
        assert diff <= 1e-4, f"step {sc.index}: chosen-token probabilities differ by {diff:.2e}"
    # scoring the output under the grouping the run took gives back the step probabilities
    out = torch.tensor(cached.output_ids)
    lp = a3.token_logprobs(out[None], cached.group_ids(context)[None])[0]
    for s in cached.steps:
        scored = lp[s.positions].exp().tolist()
        diff = max(abs(a - b) for a, b in zip(scored, s.probs))
        assert diff <= 1e-4, f"step {s.index}: token_logprobs {scored} vs step probs {s.probs}"
    ll = lp[mask].sum().item()
    assert abs(ll - cached.log_likelihood) <= 1e-3, f"Trace.log_likelihood {cached.log_likelihood} vs scored {ll}"


@pytest.mark.parametrize("context", ["block", "causal"])
def test_cached_step_equals_full_forward_for_prefix(a3_llama, context):
    """Each fixed-order step's distributions == an uncached forward built here by hand."""
    ids, mask = _request(seed=4)
    V = a3_llama.config.vocab_size
    trace = run(a3_llama, ids, mask, _cfg("outside_in", context, n_alternatives=V))
    now = ids.clone()
    committed: list[list[int]] = []
    for s in trace.steps:
        ref = _full_probs(a3_llama, now, mask, committed, s.positions, context)
        for j, p in enumerate(s.positions):
            got = torch.tensor([_alt_dict(s, j)[f"<{t}>"] for t in range(V)])
            diff = (got - ref[j]).abs().max().item()
            assert diff <= 1e-4, f"step {s.index}, position {p}: cached vs hand-built forward differ by {diff:.2e}"
        now[s.positions] = torch.tensor(s.token_ids)
        committed.append(s.positions)


# ----------------------------------------------------------------------------------------------
# invariants every strategy keeps


@pytest.mark.parametrize("group_size", [1, 3])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_decoding_invariants(a3_llama, strategy, group_size):
    """Visible tokens unchanged, blanks filled exactly once, one walk per step, the step count."""
    ids, mask = _request(seed=1)
    ids_before = ids.clone()
    trace = run(a3_llama, ids, mask, _cfg(strategy, group_size=group_size))
    assert torch.equal(ids, ids_before), "decoding modified the caller's input_ids tensor"
    out = trace.output_ids
    visible = (~mask).nonzero().flatten().tolist()
    assert [out[p] for p in visible] == [int(ids[p]) for p in visible], "a visible token changed"
    filled = [p for s in trace.steps for p in s.positions]
    assert sorted(filled) == BLANKS, f"positions across steps {filled} are not a partition of the blanks {BLANKS}"
    expected_steps = len(CUSTOM) if strategy == "custom" else math.ceil(len(BLANKS) / group_size)
    assert len(trace.steps) == expected_steps, f"{len(trace.steps)} steps, expected {expected_steps}"
    for i, s in enumerate(trace.steps):
        assert s.index == i, f"step indices are not 0, 1, 2, ...: got {s.index} at {i}"
        assert s.forward_passes == i + 1, f"step {i} reports {s.forward_passes} walks; cached decoding does one per step"
        assert s.pending == len(BLANKS) - sum(len(t.positions) for t in trace.steps[:i + 1]), "wrong pending count"
        assert len(s.token_ids) == len(s.tokens) == len(s.probs) == len(s.alternatives) == len(s.entropy) == len(s.positions), \
            "per-position lists of a step have different lengths"
        assert s.tokens == [f"<{t}>" for t in s.token_ids], "without a tokenizer, tokens read <id>"
        assert all(0 < p <= 1 for p in s.probs), f"probabilities out of (0, 1]: {s.probs}"
        assert all(e >= 0 for e in s.entropy), f"negative entropy: {s.entropy}"
        assert all(len(a) == 5 for a in s.alternatives), "n_alternatives=5 alternatives per position"
    assert [s.elapsed for s in trace.steps] == sorted(s.elapsed for s in trace.steps), "elapsed time runs backwards"


def _flat(trace) -> list[int]:
    return [p for s in trace.steps for p in s.positions]


@pytest.mark.parametrize("group_size", [1, 2, 3])
def test_fixed_commit_orders(a3_llama, group_size):
    """left_to_right / right_to_left / outside_in / custom commit exactly the planned groups."""
    ids, mask = _request(seed=2)

    def groups(strategy, **kw):
        return [s.positions for s in run(a3_llama, ids, mask, _cfg(strategy, group_size=group_size, **kw)).steps]

    chunk = lambda order: [order[i:i + group_size] for i in range(0, len(order), group_size)]  # noqa: E731
    assert groups("left_to_right") == chunk(BLANKS), "left_to_right must commit blanks in increasing position"
    assert groups("right_to_left") == chunk(BLANKS[::-1]), "right_to_left must commit blanks in decreasing position"
    # spans [3,4,5] [9..12] [15]: edges first (3,9,15), then the other edges (5,12), then inwards
    edge_first = [3, 9, 15, 5, 12, 4, 10, 11]
    assert groups("outside_in") == chunk(edge_first), f"outside_in must fill span edges first: {groups('outside_in')}"
    assert groups("custom") == CUSTOM, "custom must commit exactly the given groups in the given order"
    rnd = groups("random")
    assert sorted(p for grp in rnd for p in grp) == BLANKS and all(len(grp) <= group_size for grp in rnd), \
        f"random order is not a grouping of the blanks: {rnd}"
    assert rnd == groups("random"), "the random order must be reproducible for a seed"


@pytest.mark.parametrize("context", ["block", "causal"])
@pytest.mark.parametrize("strategy", ["confidence", "margin", "entropy"])
def test_dynamic_commits_the_best_scored(a3_llama, strategy, context):
    """Each step commits the k pending blanks with the highest score, checked on the uncached model."""
    ids, mask = _request(seed=6)
    k = 2
    trace = run(a3_llama, ids, mask, _cfg(strategy, context, group_size=k))
    now, committed = ids.clone(), []
    pending = list(BLANKS)
    for s in trace.steps:
        probs = _full_probs(a3_llama, now, mask, committed, pending, context)  # (P, V)
        if strategy == "confidence":
            score = probs.max(-1).values
        elif strategy == "margin":
            top = probs.topk(2, -1).values
            score = top[:, 0] - top[:, 1]
        else:
            score = (probs * probs.log()).sum(-1)
        chosen = [pending.index(p) for p in s.positions]
        others = [i for i in range(len(pending)) if i not in chosen]
        assert len(chosen) == min(k, len(pending)), f"step {s.index} committed {len(chosen)}, expected k={k}"
        if others:
            worst_chosen, best_other = score[chosen].min().item(), score[others].max().item()
            assert worst_chosen >= best_other - 1e-6, (
                f"step {s.index}: committed {s.positions} (lowest {strategy} {worst_chosen:.4f}) while a pending "
                f"blank scores {best_other:.4f}")
        now[s.positions] = torch.tensor(s.token_ids)
        committed.append(s.positions)
        pending = [p for p in pending if p not in s.positions]


@pytest.mark.parametrize("strategy", DYNAMIC_ORDERS)
def test_threshold_mode(a3_llama, strategy):
    """Threshold: at least one per step; every pending blank whose max prob reaches the threshold
    is committed; everything committed reaches it, except the single best-scored fallback."""
    ids, mask = _request(seed=8)
    threshold = 0.25
    trace = run(a3_llama, ids, mask, _cfg(strategy, threshold=threshold))
    now, committed, pending = ids.clone(), [], list(BLANKS)
    multi = 0
    for s in trace.steps:
        maxp = _full_probs(a3_llama, now, mask, committed, pending, "block").max(-1).values
        above = {p for p, m in zip(pending, maxp.tolist()) if m >= threshold}
        assert len(s.positions) >= 1, f"step {s.index} committed nothing"
        assert above <= set(s.positions), f"step {s.index}: blanks {sorted(above - set(s.positions))} reach the threshold but wait"
        below = set(s.positions) - above
        assert len(below) <= 1 and (not below or not above), (
            f"step {s.index}: committed {sorted(below)} below the threshold alongside {sorted(above)}")
        multi += len(s.positions) > 1
        now[s.positions] = torch.tensor(s.token_ids)
        committed.append(s.positions)
        pending = [p for p in pending if p not in s.positions]
    assert not pending, "threshold decoding left blanks open"
    assert multi > 0 or len(trace.steps) == len(BLANKS), "test threshold never let two blanks through together"


# ----------------------------------------------------------------------------------------------
# seeds


@pytest.mark.parametrize("strategy", ["left_to_right", "random", "confidence", "dynamic_random"])
def test_same_seed_same_output_when_sampling(a3_llama, strategy):
    ids, mask = _request(seed=9)
    cfg = lambda seed: _cfg(strategy, sampling=SamplingConfig(do_sample=True, seed=seed))  # noqa: E731
    a, b = run(a3_llama, ids, mask, cfg(5)), run(a3_llama, ids, mask, cfg(5))
    assert a.output_ids == b.output_ids, "the same seed gave different outputs"
    assert [s.positions for s in a.steps] == [s.positions for s in b.steps], "the same seed gave different orders"
    outputs = {tuple(run(a3_llama, ids, mask, cfg(seed)).output_ids) for seed in range(5)}
    assert len(outputs) > 1, "five different seeds all gave the same sampled output"


@pytest.mark.parametrize("strategy", ["left_to_right", "outside_in", "confidence", "entropy"])
def test_greedy_is_seed_independent(a3_llama, strategy):
    ids, mask = _request(seed=10)
    outs = {tuple(run(a3_llama, ids, mask, _cfg(strategy, sampling=SamplingConfig(seed=s))).output_ids)
            for s in (0, 1, 12345)}
    assert len(outs) == 1, f"greedy decoding depends on the seed: {outs}"


def test_decode_is_a_lazy_generator(a3_llama):
    """decode yields one Step at a time; stopping early is fine."""
    ids, mask = _request()
    gen = decode(a3_llama, ids, mask, _cfg("left_to_right", group_size=1))
    first = next(gen)
    assert first.positions == [BLANKS[0]] and first.pending == len(BLANKS) - 1, f"unexpected first step {first}"
    gen.close()


def test_all_strategies_are_listed():
    assert set(STRATEGIES) == set(FIXED_ORDERS) | set(DYNAMIC_ORDERS), "STRATEGIES must be fixed + dynamic"
