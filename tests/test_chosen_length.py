"""A blank whose length the model chooses with its learned length signal (core/chosen_length.py):
the empty token never reaches a fixed-length blank, a slack blank's fill sits at the front of its
slots whatever the order, closing slots end it, and compaction gives the story as filled."""
from dataclasses import replace

import pytest
import torch
from conftest import make_a3

from model.core.chosen_length import SlackBlank, compact
from model.core.decode import STRATEGIES, DecodeConfig, decode_batch, run, run_batch
from model.core.sampling import SamplingConfig

EMPTY = 1  # the tiny config's EOS: excluded from every blank unless a slack blank may end there
SIGNAL = {"empty_id": EMPTY, "empty_token": "<eos>", "max_slots": 16}


def request(T=30, first=10, slots=8):
    ids = torch.randint(3, 99, (T,), generator=torch.Generator().manual_seed(0))
    ids[0] = 0
    mask = torch.zeros(T, dtype=torch.bool)
    mask[first:first + slots] = True
    mask[22:24] = True  # a fixed-length blank after it
    return ids, mask


def with_signal(bias: float = 0.0, seed: int = 0):
    """A tiny A3 model that knows the empty token; bias raises its logit everywhere."""
    model = make_a3(seed=seed)
    model.a3_config.length_signal = dict(SIGNAL)
    with torch.no_grad():
        model.base.lm_head.weight[EMPTY] *= 0  # a bias is easier to read without the random part
        if model.base.lm_head.bias is not None:
            model.base.lm_head.bias[EMPTY] = bias
    if bias:  # a bias through the final norm's output: add a constant direction to the empty row
        hook = model.base.lm_head.register_forward_hook(
            lambda m, i, out: out.index_add(-1, torch.tensor([EMPTY]), torch.full_like(out[..., :1], bias)))
        model._hook = hook
    return model


def test_fixed_length_fills_never_take_the_empty_token_and_are_unchanged():
    """With the empty token the model's favourite, a fixed-length fill never holds it, and every
    step equals the same model's without the signal (ids and probabilities)."""
    ids, mask = request()
    for strategy in STRATEGIES:
        cfg = DecodeConfig(strategy=strategy, custom_groups=[[p] for p in mask.nonzero().flatten().tolist()]
                           if strategy == "custom" else None)
        model = with_signal(bias=30.0)
        trace = run(model, ids, mask, cfg)
        out = trace.output_ids
        assert all(out[p] != EMPTY for p in mask.nonzero().flatten().tolist()), f"{strategy}: empty token in a fill"
        model.a3_config.length_signal = {}
        plain = run(model, ids, mask, cfg)
        assert plain.output_ids == out, f"{strategy}: the signal changed a fixed-length fill"
        assert [s.probs for s in plain.steps] == [s.probs for s in trace.steps], f"{strategy}: probabilities moved"


def test_a_slack_blank_ends_at_the_first_empty_and_closes_the_rest():
    """The empty token favoured: left to right, slot 0 gets a word (least length 1), slot 1 ends
    the fill and the other six slots close in that same step."""
    ids, mask = request()
    model = with_signal(bias=30.0)
    steps = [s[0] for s in decode_batch(model, [(ids, mask)], [DecodeConfig(slack=(10, 8, 1))])]
    assert steps[0].positions == [10] and steps[0].token_ids[0] != EMPTY, "slot 0 takes a word"
    assert steps[1].positions == [11] and steps[1].token_ids == [EMPTY], "slot 1 ends the fill"
    assert steps[1].closed == list(range(12, 18)), f"the other slots close at once: {steps[1].closed}"
    assert steps[1].empty_prob[0] > 0.99, "the step records the model's probability of ending"
    assert all(set(s.positions) <= {22, 23} for s in steps[2:]), "then only the fixed blank is decoded"


@pytest.mark.parametrize("strategy", ["left_to_right", "right_to_left", "outside_in", "random", "confidence",
                                      "entropy"])
def test_the_fill_stays_at_the_front_of_its_slots_in_any_order(strategy):
    """A mild bias toward ending: whatever the order, the slots read words then empties, and the
    compacted story is the raw one with the empties removed."""
    ids, mask = request()
    for seed in range(4):
        model = with_signal(bias=3.0, seed=seed)
        cfg = DecodeConfig(strategy=strategy, slack=(10, 8, 2), sampling=SamplingConfig(do_sample=True, seed=seed))
        raw = [s[0] for s in decode_batch(model, [(ids, mask)], [cfg]) if s[0] is not None]
        out = ids.tolist()
        for s in raw:
            for p, t in zip(s.positions, s.token_ids):
                out[p] = t
            for p in s.closed:
                out[p] = EMPTY
        slots = out[10:18]
        n_words = next((i for i, t in enumerate(slots) if t == EMPTY), 8)
        assert n_words >= 2, f"{strategy}: at least the least length of words, got {slots}"
        assert all(t == EMPTY for t in slots[n_words:]), f"{strategy}: empties only at the back: {slots}"
        trace = run_batch(model, [(ids, mask)], [cfg])[0]
        assert trace.output_ids == [t for i, t in enumerate(out) if not (10 <= i < 18 and t == EMPTY)], \
            f"{strategy}: the compacted story is the raw one without its empties"
        assert trace.chosen["length"] == n_words and trace.chosen["slots"] == 8, f"chosen: {trace.chosen}"
        assert trace.blank_spans[0] == list(range(10, 10 + n_words)), "the blank span shrinks to the fill"


def test_compact_keeps_the_words_and_the_probability_of_the_length():
    """Left to right, p_length = prod(1 - p_empty) over the words' slots x p_empty at the end."""
    ids, mask = request()
    model = with_signal(bias=2.0)
    cfg = DecodeConfig(slack=(10, 8, 1))
    steps = [s[0] for s in decode_batch(model, [(ids, mask)], [cfg]) if s[0] is not None]
    trace = run_batch(model, [(ids, mask)], [cfg])[0]
    L = trace.chosen["length"]
    slot_steps = [s for s in steps if s.positions[0] < 18][:L + 1]
    want = 1.0
    for s in slot_steps[:L]:
        want *= 1 - s.empty_prob[0]
    if L < 8:
        want *= slot_steps[L].empty_prob[0]
        assert trace.chosen["p_end"] == pytest.approx(slot_steps[L].probs[0]), "p_end: the ending slot's probability"
        assert trace.chosen["p_length"] == pytest.approx(want, rel=1e-5), "p_length: the product over the slots"
    assert EMPTY not in trace.output_ids[1:], "the story as filled holds no empty token"


def test_slack_needs_a_model_that_learned_the_signal():
    ids, mask = request()
    with pytest.raises(ValueError, match="not learned where a fill ends"):
        run(make_a3(), ids, mask, DecodeConfig(slack=(10, 8, 1)))
    with pytest.raises(ValueError, match="must all be blank positions"):
        run(with_signal(), ids, mask, DecodeConfig(slack=(9, 8, 1)))


def test_compact_without_an_ending_keeps_every_slot():
    """A fill that uses all its slots: nothing removed, the length is the slot count."""
    ids, mask = request()
    model = with_signal(bias=-30.0)  # never ends early
    trace = run_batch(model, [(ids, mask)], [DecodeConfig(slack=(10, 8, 1))])[0]
    assert trace.chosen == {"slots": 8, "length": 8, "p_end": None}, f"chosen: {trace.chosen}"
    assert len(trace.output_ids) == len(ids), "nothing removed"
    assert isinstance(compact(trace, SlackBlank(10, 8, EMPTY)).chosen, dict), "compact is idempotent on words"


def test_the_slack_marker_reaches_the_queries_of_slack_slots_only():
    """With the marker trained (length_signal["marker"]), a query at a slack slot starts from w +
    the empty token's embedding: the forward changes there and nowhere else, and the cached decode
    marks the same queries as the full recompute (same tokens, same probabilities)."""
    ids, mask = request()
    model = with_signal()
    model.a3_config.length_signal["marker"] = True
    slots = torch.zeros_like(mask)
    slots[10:18] = True
    g = torch.arange(len(ids)) * mask  # the visible text in group 0, each blank its own group
    with torch.no_grad():
        plain = model(ids[None], g[None]).logits[0]
        marked = model(ids[None], g[None], slack_mask=slots[None]).logits[0]
    assert torch.equal(plain[~slots], marked[~slots]), "the marker must not reach a query outside the slots"
    assert (plain[slots] - marked[slots]).abs().amax(-1).min() > 1e-4, "every slack slot's query should move"
    for strategy in ("left_to_right", "confidence"):
        cfg = DecodeConfig(strategy=strategy, slack=(10, 8, 1))
        cached = run_batch(model, [(ids, mask)], [cfg], compact_slack=False)[0]
        full = run_batch(model, [(ids, mask)], [replace(cfg, use_cache=False)], compact_slack=False)[0]
        assert cached.output_ids == full.output_ids, f"{strategy}: cached and full runs chose differently"
        for a, b in zip(cached.steps, full.steps):
            assert a.probs == pytest.approx(b.probs, abs=1e-5), f"{strategy}: step {a.index} probabilities differ"
    marked_run = run_batch(model, [(ids, mask)], [DecodeConfig(slack=(10, 8, 1))], compact_slack=False)[0]
    model.a3_config.length_signal["marker"] = False
    unmarked = run_batch(model, [(ids, mask)], [DecodeConfig(slack=(10, 8, 1))], compact_slack=False)[0]
    assert unmarked.steps[0].probs != pytest.approx(marked_run.steps[0].probs, abs=1e-6), \
        "decoding a slack slot should use the marker when the signal was trained with it"
