"""Scoring: the factorization is a normalised distribution; BOS and padding carry no loss.

Summing p(x) = exp(sum_i log p(x_i | earlier groups)) over every sequence of a tiny vocabulary
gives 1 under any grouping only if no query sees its own group or a later one.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from model.core.a3 import A3Model

VOCAB, N = 5, 3  # every sequence BOS + 3 tokens over a 5-token vocabulary: 125 sequences
GROUPINGS = {
    "left_to_right": [0, 1, 2],
    "right_to_left": [2, 1, 0],
    "non_monotone": [1, 2, 0],
    "pair_then_one": [0, 0, 1],
    "split_pair": [1, 0, 1],  # a group of 2 that is not contiguous, after the middle token
    "one_group": [0, 0, 0],
    "gaps": [7, 3, 7],  # ids need not be consecutive
}


def _all_sequences(bos: int = 0) -> torch.Tensor:
    rows = [[bos, *xs] for xs in itertools.product(range(VOCAB), repeat=N)]
    return torch.tensor(rows)  # (VOCAB**N, 1 + N)


@pytest.mark.parametrize("name", sorted(GROUPINGS))
def test_likelihood_sums_to_one_over_all_sequences(backbone, name, make_model):
    """sum over x of exp(log p(x)) == 1 under the grouping (within 1e-5)."""
    model = make_model(backbone, vocab_size=VOCAB, initializer_range=1.0)
    ids = _all_sequences()
    g = torch.tensor([[0, *GROUPINGS[name]]]).expand_as(ids)
    lp = model.token_logprobs(ids, g)  # (S, 1 + N), 0 at the BOS
    total = lp[:, 1:].sum(-1).double().exp().sum().item()
    assert abs(total - 1.0) <= 1e-5, f"grouping {name}: probabilities of all sequences sum to {total:.8f}"
    p = lp.sum(-1).exp()
    assert p.max() > 5 * p.min(), "the model is nearly uniform over sequences; the test has no power"


@torch.no_grad()
def test_likelihood_sum_detects_a_leak(make_model):
    """Control: scoring x_i with a state that has seen x_i (the content stream) does not sum to 1,
    so the normalisation test above can fail."""
    model = make_model("llama", vocab_size=VOCAB, initializer_range=1.0)
    ids = _all_sequences()
    g = torch.tensor([[0, 0, 1, 2]]).expand_as(ids)
    content = model(ids, g, content_out=True).content
    lp = torch.log_softmax(model.head(content), -1).gather(-1, ids[..., None]).squeeze(-1)
    total = lp[:, 1:].sum(-1).double().exp().sum().item()
    assert abs(total - 1.0) > 1e-2, f"a leaky scorer also sums to {total:.6f}; the normalisation test is blind"


def test_bos_and_padding_carry_no_loss(a3):
    """default_labels puts -100 at the BOS and at padding; token_logprobs is 0 there."""
    ids = torch.randint(3, 99, (2, 10), generator=torch.Generator().manual_seed(0))
    am = torch.ones(2, 10, dtype=torch.long)
    am[1, 6:] = 0
    labels = A3Model.default_labels(ids, am)
    assert bool((labels[:, 0] == -100).all()), f"the BOS is a target: labels[:, 0] = {labels[:, 0].tolist()}"
    assert bool((labels[1, 6:] == -100).all()), f"padding is a target: {labels[1].tolist()}"
    assert torch.equal(labels[0, 1:], ids[0, 1:]), "real tokens after the BOS must be their own targets"
    assert torch.equal(labels[1, 1:6], ids[1, 1:6]), "real tokens of a padded row must be their own targets"
    lp = a3.token_logprobs(ids, torch.arange(10).expand(2, 10), am)
    assert bool((lp[:, 0] == 0).all()), "token_logprobs must be 0 at the BOS"
    assert bool((lp[1, 6:] == 0).all()), "token_logprobs must be 0 at padding"
    assert bool((lp[0, 1:] < 0).all()), "real tokens must have a log-probability below 0"


@torch.no_grad()
def test_loss_is_mean_nll_of_real_tokens(a3):
    """forward's loss == the mean of -token_logprobs over real tokens after the BOS; padded ids
    and the BOS id do not change it beyond their effect as context (padding: none)."""
    ids = torch.randint(3, 99, (2, 12), generator=torch.Generator().manual_seed(1))
    am = torch.ones(2, 12, dtype=torch.long)
    am[0, 8:] = 0
    g = torch.randperm(12, generator=torch.Generator().manual_seed(2)).expand(2, 12)
    out = a3(ids, g, am, labels=A3Model.default_labels(ids, am))
    lp = a3.token_logprobs(ids, g, am)
    n_targets = int(am[:, 1:].sum())
    expected = -lp.sum() / n_targets
    assert abs(out.loss.item() - expected.item()) <= 1e-5, (
        f"loss {out.loss.item():.6f} is not the mean NLL over {n_targets} real tokens ({expected.item():.6f})")
    other = ids.clone()
    other[0, 8:] = 2
    loss2 = a3(other, g, am, labels=A3Model.default_labels(other, am)).loss
    assert abs(loss2.item() - out.loss.item()) <= 1e-6, "padded token ids changed the loss"


def test_training_step_gradients_are_finite(a3):
    """The BOS query row has no key it may attend to; its (ignored) output must not poison the
    gradients with NaN, and w must receive a gradient."""
    ids = torch.randint(3, 99, (2, 10), generator=torch.Generator().manual_seed(3))
    am = torch.ones(2, 10, dtype=torch.long)
    am[1, 7:] = 0
    g = torch.arange(10).expand(2, 10) // 2
    out = a3(ids, g, am, labels=A3Model.default_labels(ids, am))
    out.loss.backward()
    bad = [n for n, p in a3.named_parameters() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    assert not bad, f"non-finite gradients in {bad[:5]}"
    assert a3.w.grad is not None and a3.w.grad.abs().sum() > 0, "w received no gradient"


def test_a_left_to_right_run_scores_itself(a3_llama):
    """A greedy or sampled left-to-right run's own log-likelihood equals blanks_logp of its fill (the
    second forward the app skips), and other orders are not taken for it."""
    from model.core.decode import DecodeConfig, run
    from model.core.sampling import SamplingConfig
    from model.core.scoring import blanks_logp, scored_by_its_run
    ids = torch.randint(3, 99, (20,), generator=torch.Generator().manual_seed(3))
    ids[0] = 0
    mask = torch.zeros(20, dtype=torch.bool)
    mask[4:8] = True
    mask[12:15] = True
    for cfg in (DecodeConfig(), DecodeConfig(sampling=SamplingConfig(do_sample=True, temperature=0.9, top_k=5, seed=1))):
        t = run(a3_llama, ids, mask, cfg)
        assert scored_by_its_run(cfg, t), "a left-to-right run of one token a step scores itself"
        want = blanks_logp(a3_llama, [(t.output_ids, t.blank_mask)])[0]
        assert abs(t.log_likelihood - want) < 1e-4, f"its own log p {t.log_likelihood} vs rescored {want}"
    for cfg in (DecodeConfig(strategy="confidence"), DecodeConfig(group_size=2), DecodeConfig(context="causal")):
        assert not scored_by_its_run(cfg, run(a3_llama, ids, mask, cfg)), f"{cfg.strategy}/{cfg.group_size}: rescored"
