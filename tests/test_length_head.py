"""The length head (core/length_head.py): its features against a full two-stream forward, its prior,
its fit, and its place in a checkpoint and in the fills study's ranking."""
from __future__ import annotations

import math

import pytest
import torch

from model.core.groups import group_ids_from_order
from model.core.length_head import MAX_LENGTH, LengthHead, collapse, length_features

IDS = [0, 11, 12, 13, 50, 50, 50, 50, 21, 22, 23, 24]  # BOS, 3 visible, a 4-token blank, 4 visible
BLANK = [4, 5, 6, 7]


def _oracle(model, ids: list[int], slot: int, hidden: list[int] = ()) -> torch.Tensor:
    """The features from A3Model.forward: the slot queried after the visible text (one group), the
    hidden positions in a later group, so that neither the text nor the slot sees them."""
    T = len(ids)
    visible = [i for i in range(1, T) if i != slot and i not in hidden]
    g = group_ids_from_order(T, visible, [[slot]] + ([list(hidden)] if hidden else []), "block")
    t = torch.tensor([ids])
    out = model(t, g[None], content_out=True, query_positions=torch.tensor([[slot]]))
    # the query state is not returned: its logits are, and the head is linear after the final norm
    return out.logits[0, 0], out.content[0, slot - 1], out.content[0, T - 1]


def test_collapse_leaves_one_slot_and_refuses_a_broken_span():
    ids, slot = collapse(IDS, BLANK, 99)
    assert ids == [0, 11, 12, 13, 99, 21, 22, 23, 24] and slot == 4, f"collapsed to {ids}, slot {slot}"
    with pytest.raises(ValueError, match="contiguous"):
        collapse(IDS, [4, 6], 99)
    with pytest.raises(ValueError, match="contiguous"):
        collapse(IDS, [0, 1], 99)


def test_features_are_the_forwards_states_at_the_slot_and_around_it(a3):
    feats = length_features(a3, [(IDS, BLANK)])
    C = a3.config.hidden_size
    assert feats.shape == (1, 3 * C), f"features of shape {tuple(feats.shape)}, want (1, {3 * C})"
    ids, slot = collapse(IDS, BLANK, IDS[0])
    logits, before, last = _oracle(a3, ids, slot)
    assert torch.allclose(a3.head(feats[:, :C])[0], logits, atol=1e-4), "the slot's query state is not the forward's"
    assert torch.allclose(feats[0, C:2 * C], before, atol=1e-5), "the state before the blank is not the forward's"
    assert torch.allclose(feats[0, 2 * C:], last, atol=1e-5), "the last token's state is not the forward's"


def test_other_blanks_are_hidden_and_batching_changes_nothing(a3):
    ids = IDS + [60, 60, 31]  # a second blank at 12, 13, then one visible token
    rows = [(ids, BLANK, [12, 13]), (IDS, BLANK), (IDS[:6] + [50] + IDS[8:], [4, 5, 6])]
    together = length_features(a3, rows)
    for i, row in enumerate(rows):
        alone = length_features(a3, [row])
        assert torch.allclose(together[i], alone[0], atol=1e-5), f"row {i} changes when batched with others"
    c_ids, slot = collapse(ids, BLANK, ids[0])
    logits, before, last = _oracle(a3, c_ids, slot, hidden=[9, 10])  # 12, 13 moved back by 3
    C = a3.config.hidden_size
    assert torch.allclose(a3.head(together[:1, :C])[0], logits, atol=1e-4), "a hidden blank is seen by the slot"
    assert torch.allclose(together[0, 2 * C:], last, atol=1e-5), "a hidden blank is seen by the text"
    assert not torch.allclose(together[0], length_features(a3, [(ids, BLANK)])[0], atol=1e-4), \
        "hiding the other blank changed nothing: the test would not see a leak"


def test_the_prior_is_a_distribution_over_whole_lengths():
    torch.manual_seed(0)
    head = LengthHead(6)
    feats = torch.randn(1, 6)
    lengths = list(range(1, MAX_LENGTH + 1))
    total = sum(math.exp(v) for v in head.log_prior(feats, lengths))
    assert abs(total - 1) < 1e-6, f"p(L) over 1..{MAX_LENGTH} sums to {total}"
    with torch.no_grad():
        mu, sigma = (float(t[0]) for t in head(feats))
    med, lo, hi = head.interval(feats, 0.5)
    assert abs(med - math.exp(mu)) < 1e-6 and lo < med < hi, f"interval ({med}, {lo}, {hi}) around exp(mu)"
    cdf = lambda x: 0.5 * (1 + math.erf((math.log(x) - mu) / (sigma * math.sqrt(2))))  # noqa: E731
    assert abs(cdf(hi) - cdf(lo) - 0.5) < 1e-5, "the interval does not hold half the mass"
    with pytest.raises(ValueError, match="lengths must be"):
        head.log_prior(feats, [0])


def test_fitting_recovers_a_known_relation_and_saving_keeps_it(tmp_path):
    from model.training.length_fit import fit, measure

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 5, generator=g) * 3 + 1  # unstandardized on purpose
    log_len = 2.5 + 0.4 * (x[:, 0] - 1) / 3 + 0.1 * torch.randn(2000, generator=g)
    lengths = log_len.exp().round().clamp_min(1)
    head, log = fit(x, lengths, l2=(1e-4, 1e-3))
    mu, sigma = head(x)
    assert (mu - log_len).abs().mean() < 0.1, f"mean |mu - log L| {float((mu - log_len).abs().mean()):.3f}"
    assert float(sigma.detach().mean()) < 0.2, f"sigma {float(sigma.detach().mean()):.3f}: the head did not use the feature"
    m = measure(head, x[:300], lengths[:300], float(lengths.median()))
    assert m["head"]["abs_p50"] < m["constant"]["abs_p50"], f"the head is no better than a constant: {m}"
    head.save(tmp_path)
    again = LengthHead.load(tmp_path)
    assert torch.equal(again(x[:4])[0], head(x[:4])[0]), "a saved and loaded head predicts differently"
    assert LengthHead.load(tmp_path / "nothing") is None, "a checkpoint without a head must load as None"


def test_load_a3_attaches_the_head_outside_the_models_parameters(tmp_path):
    import shutil

    from model.backbones.lora import load_a3

    ckpt = tmp_path / "tiny"
    shutil.copytree("assets/a3-austen-tiny", ckpt)
    model, _ = load_a3(ckpt)
    assert model.length_head is None, "a checkpoint without length_head.safetensors got a head"
    n = sum(p.numel() for p in model.parameters())
    LengthHead(3 * model.config.hidden_size).save(ckpt)
    model, _ = load_a3(ckpt)
    assert isinstance(model.length_head, LengthHead), "the saved head was not loaded"
    assert sum(p.numel() for p in model.parameters()) == n, "the head became one of the model's parameters"
    feats = length_features(model, [(IDS, BLANK)])
    assert len(model.length_head.log_prior(feats, [1, 4, 16])) == 3, "the loaded head gives no prior"


def test_the_chosen_length_is_the_grid_length_nearest_the_median_and_ties_go_short():
    from model.core.length_head import choose_length

    def head_at(median: float, raw_sigma: float) -> LengthHead:
        h = LengthHead(2)
        with torch.no_grad():
            h.linear.weight.zero_()
            h.linear.bias.copy_(torch.tensor([math.log(median), raw_sigma]))
        return h

    feats = torch.zeros(1, 2)
    grid = [1, 2, 3, 5, 8, 14, 24, 40]
    got = choose_length(head_at(13.0, 0.0), feats, grid)  # sigma ~0.74: the mode (~7.5) is far below 13
    assert got["length"] == 14 and got["median"] == 13, f"13 is nearest 14 in log length, not 8: {got}"
    assert max(got["p"], key=got["p"].get) == 8, "the mode's grid length (8) is not what is chosen"
    assert abs(sum(got["p"].values()) - 1) < 1e-9 and got["low"] < 13 < got["high"], f"p over the grid: {got}"
    assert choose_length(head_at(math.sqrt(8 * 14), 0.0), feats, [14, 8])["length"] == 8, \
        "a median halfway (in log length) between 8 and 14 goes to the shorter"
