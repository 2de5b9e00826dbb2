"""Batched decoding and the special-token exclusion.

- B rows of one story (other seeds, orders, group sizes, blank lengths) decoded together: each row
  equals its own single-row decode (same commits and tokens, probabilities to 1e-5 in fp32), with
  the cache and with the full recompute;
- a model rigged to prefer EOS never puts one in a blank, under every strategy, while the
  probabilities reported stay the model's own and each step carries the mass it excluded.
"""
from __future__ import annotations

import pytest
import torch

from model.core.a3 import A3Model
from model.core.decode import STRATEGIES, DecodeConfig, run, run_batch
from model.core.sampling import SamplingConfig, excluded_ids

T = 20


def _story(blank_len: int, seed: int = 0):
    """BOS + 8 visible + `blank_len` blanks + the rest visible (the same text around every length)."""
    gen = torch.Generator().manual_seed(seed)
    left, right = torch.randint(4, 99, (8,), generator=gen), torch.randint(4, 99, (10,), generator=gen)
    ids = torch.cat([torch.tensor([0]), left, torch.full((blank_len,), 3), right])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[9:9 + blank_len] = True
    return ids, mask


ROWS = [  # (blank length, config): lengths, seeds, orders and group sizes all differ
    (6, DecodeConfig()),
    (6, DecodeConfig(sampling=SamplingConfig(do_sample=True, temperature=0.8, seed=1))),
    (6, DecodeConfig(sampling=SamplingConfig(do_sample=True, temperature=0.8, seed=2))),
    (3, DecodeConfig(strategy="outside_in", group_size=2)),
    (9, DecodeConfig(strategy="confidence", group_size=2)),
    (4, DecodeConfig(strategy="entropy", threshold=0.2, context="causal")),
    (7, DecodeConfig(strategy="right_to_left", sampling=SamplingConfig(do_sample=True, top_k=20, seed=5))),
    (1, DecodeConfig(strategy="random", group_size=3)),
]


def _assert_same(batched, single, where: str, shared_walk: int = 0):
    assert len(batched.steps) == len(single.steps), f"{where}: {len(batched.steps)} steps batched, {len(single.steps)} alone"
    for sb, ss in zip(batched.steps, single.steps):
        assert sb.positions == ss.positions, f"{where}, step {ss.index}: commits {sb.positions} vs {ss.positions}"
        assert sb.token_ids == ss.token_ids, f"{where}, step {ss.index}: tokens {sb.token_ids} vs {ss.token_ids}"
        diff = max(abs(a - b) for a, b in zip(sb.probs, ss.probs))
        assert diff <= 1e-5, f"{where}, step {ss.index}: probabilities differ by {diff:.2e}"
        assert sb.forward_passes == ss.forward_passes + shared_walk, \
            f"{where}: a row counts its own walks (plus the batch's one shared context walk)"


@pytest.mark.parametrize("use_cache", [True, False])
def test_each_batched_row_equals_its_own_decode(a3_llama, use_cache):
    requests = [_story(n, seed=0) for n, _ in ROWS]
    cfgs = [DecodeConfig(**{**vars(c), "use_cache": use_cache}) for _, c in ROWS]
    batched = run_batch(a3_llama, requests, cfgs)
    for b, ((ids, mask), cfg) in enumerate(zip(requests, cfgs)):
        _assert_same(batched[b], run(a3_llama, ids, mask, cfg), f"row {b} ({cfg.strategy}, {int(mask.sum())} blanks)",
                     shared_walk=int(use_cache))


def test_a_batch_is_one_walk_per_step(a3_llama, monkeypatch):
    """Eight rows in lockstep (same order and length, other seeds): one walk encodes their shared
    context, then one walk per step for all of them."""
    import model.core.decode as dec
    calls = []
    real = dec.two_stream_walk
    monkeypatch.setattr(dec, "two_stream_walk", lambda *a, **k: calls.append(1) or real(*a, **k))
    ids, mask = _story(6)
    cfgs = [DecodeConfig(sampling=SamplingConfig(do_sample=True, seed=s)) for s in range(8)]
    traces = run_batch(a3_llama, [(ids, mask)] * 8, cfgs)
    assert len(calls) == 1 + 6, f"8 rows x 6 steps took {len(calls)} walks; the shared context + one per step expected"
    assert len({tuple(t.output_ids) for t in traces}) > 1, "eight seeds gave one fill: rows are not independent"


def _rig_eos(model, eos: int = 1, boost: float = 30.0):
    """Make EOS the argmax everywhere: +boost on its logit in the model's head (decoding and
    scoring both read logits through A3Model.head)."""
    bias = torch.zeros(model.config.vocab_size)
    bias[eos] = boost
    model.head = lambda q_states: A3Model.head(model, q_states) + bias
    return model


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_model_that_prefers_eos_never_puts_one_in_a_blank(make_model, strategy):
    model = _rig_eos(make_model("llama"))
    ids, mask = _story(6)
    cfg = DecodeConfig(strategy=strategy, group_size=2, custom_groups=[[9, 10], [11, 12, 13, 14]])
    with torch.no_grad():
        g = torch.arange(ids.numel())
        g[mask] = 100
        p_eos = model(ids[None], g[None]).logits[0, mask].softmax(-1)[:, 1]
    assert bool((p_eos > 0.9).all()), f"the rig failed: p(EOS) at the blanks {p_eos.tolist()}"
    for c in (cfg, DecodeConfig(**{**vars(cfg), "sampling": SamplingConfig(do_sample=True, seed=3)})):
        trace = run(model, ids, mask, c)
        emitted = [t for s in trace.steps for t in s.token_ids]
        assert not set(emitted) & {0, 1, 2}, f"{strategy}: a special token reached a blank: {emitted}"
        for s in trace.steps:
            assert all(m > 0.5 for m in s.excluded_mass), f"{strategy}: excluded mass should carry EOS's share: {s.excluded_mass}"
    # the probabilities reported are the model's own: they score back exactly under the run's grouping
    out = torch.tensor(trace.output_ids)
    lp = model.token_logprobs(out[None], trace.group_ids()[None])[0]
    for s in trace.steps:
        diff = max(abs(a - b) for a, b in zip(lp[s.positions].exp().tolist(), s.probs))
        assert diff <= 1e-5, f"{strategy}: reported probabilities are not the model's own ({diff:.2e})"


def test_without_the_exclusion_the_rigged_model_does_emit_eos(make_model):
    """The control: exclude_special=False lets the rig's EOS through (so the test above tests something)."""
    model = _rig_eos(make_model("llama"))
    ids, mask = _story(6)
    trace = run(model, ids, mask, DecodeConfig(exclude_special=False))
    assert 1 in [t for s in trace.steps for t in s.token_ids], "the rigged model should emit EOS when allowed"


def test_excluded_ids_cover_specials_added_and_control_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<bos>": 0, "<eos>": 1, "<pad>": 2, "a": 3, "b": 4, "\n": 5, "\u200b": 6, "c": 7}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    tok.add_tokens(["<|im_start|>"], special_tokens=False)  # an added (chat) token, not "special"
    ids = excluded_ids(tok, 12).tolist()
    assert {0, 1, 2} <= set(ids), f"special tokens must be excluded: {ids}"
    assert tok.convert_tokens_to_ids("<|im_start|>") in ids, f"added tokens must be excluded: {ids}"
    assert 5 in ids and 6 in ids, f"control / format characters (newline, zero-width space) must be excluded: {ids}"
    assert {9, 10, 11} <= set(ids), f"ids past the tokenizer's vocabulary must be excluded: {ids}"
    assert not {3, 4, 7} & set(ids), f"ordinary tokens must stay: {ids}"
