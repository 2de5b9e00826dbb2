"""The two-stream forward: parity with the base model, an eager reference, and what a query sees.

- content stream with singleton left-to-right groups == the base model's hidden states;
- query-stream logits == an independent eager implementation written here (hand-built masks);
- a query never sees its own token, its own group or a later group; it does see earlier groups
  and the BOS; padding is invisible.
"""
from __future__ import annotations

import math

import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from model.core.a3 import A3Model

# a grouping of 12 real tokens with groups of mixed sizes (1, 2, 3, 4) in a non-monotone order;
# position 0 is the BOS (its id is replaced by the model, any value works)
MIXED = [-1, 2, 0, 2, 1, 3, 3, 3, 0, 1, 4, 2, 3]


def _ids(T: int, vocab: int = 99, seed: int = 1, B: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (B, T), generator=gen)


# ----------------------------------------------------------------------------------------------
# content stream == base model


def test_content_stream_equals_base_model(a3):
    """Singleton groups in position order: the content stream is the base model's forward."""
    ids = _ids(20, B=2)
    g = torch.arange(20).expand(2, 20)
    content = a3(ids, g, content_out=True).content
    ref = a3.base.model(ids).last_hidden_state
    diff = (content - ref).abs().max().item()
    assert diff <= 1e-5, f"content stream differs from the base model's hidden states by {diff:.2e}"


@pytest.mark.parametrize("mask_dtype", [torch.long, torch.bool])
def test_content_stream_equals_base_model_with_right_padding(a3, mask_dtype):
    """Right padding: the real positions still match the base model run with the same mask."""
    ids = _ids(16, B=3)
    am = torch.ones(3, 16, dtype=mask_dtype)
    am[1, 11:] = 0
    am[2, 5:] = 0
    g = torch.arange(16).expand(3, 16)
    content = a3(ids, g, am, content_out=True).content
    ref = a3.base.model(ids, attention_mask=am.long()).last_hidden_state
    real = am.bool()
    diff = (content - ref)[real].abs().max().item()
    assert diff <= 1e-5, f"real positions differ from the base model by {diff:.2e} under right padding"


def test_bool_attention_mask_is_not_modified_and_equals_long(a3):
    """A bool attention_mask gives the same logits as a 0/1 one and is left untouched (regression:
    prepare_group_ids once cleared position 0 of the caller's bool mask, hiding the BOS)."""
    ids = _ids(10, B=2)
    g = torch.arange(10).expand(2, 10)
    am = torch.ones(2, 10, dtype=torch.bool)
    am[1, 7:] = False
    before = am.clone()
    out_bool = a3(ids, g, am).logits
    assert torch.equal(am, before), "forward modified the caller's attention_mask"
    out_long = a3(ids, g, am.long()).logits
    diff = (out_bool - out_long)[:, 1:][am[:, 1:]].abs().max().item()
    assert diff == 0.0, f"bool and long attention masks give different logits (max diff {diff:.2e})"


# ----------------------------------------------------------------------------------------------
# query stream == an eager reference written independently of model/


def _heads(x: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """(T, n*d) -> (n, T, d)."""
    return x.view(x.shape[0], n, d).transpose(0, 1)


def reference_query_logits(model: A3Model, ids: list[int], g: list[int]) -> torch.Tensor:
    """(T, V) query-stream logits by the book: explicit masks from Python loops over the group
    ids, softmax attention, RoPE, GQA by repeat_interleave, the base model's modules per layer."""
    base, net, cfg = model.base, model.base.model, model.base.config
    T = len(ids)
    H, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    D = cfg.hidden_size // H
    gg = [-1] + list(g[1:])  # the BOS is below every group
    neg = float("-inf")
    content_add = torch.full((T, T), neg)
    query_add = torch.full((T, T), neg)
    for i in range(T):
        for j in range(T):
            if gg[j] <= gg[i]:
                content_add[i, j] = 0.0
            if gg[j] < gg[i]:
                query_add[i, j] = 0.0
    query_add[0, 0] = 0.0  # the BOS row predicts nothing; give it a key so softmax stays finite
    ids_t = torch.tensor(ids)
    h = net.embed_tokens(ids_t)  # (T, C)
    q = model.w.detach().expand(T, -1)  # (T, C)
    cos, sin = net.rotary_emb(h[None], torch.arange(T)[None])  # (1, T, D)
    for layer in net.layers:
        attn = layer.self_attn
        a, b = layer.input_layernorm(h), layer.input_layernorm(q)
        qc = _heads(attn.q_proj(a), H, D)[None]  # (1, H, T, D)
        qq = _heads(attn.q_proj(b), H, D)[None]
        k = _heads(attn.k_proj(a), Hkv, D)[None]  # (1, Hkv, T, D)
        v = _heads(attn.v_proj(a), Hkv, D)
        qc, k = apply_rotary_pos_emb(qc, k, cos, sin)
        qq, _ = apply_rotary_pos_emb(qq, qq, cos, sin)
        k = k[0].repeat_interleave(H // Hkv, dim=0)  # (H, T, D)
        v = v.repeat_interleave(H // Hkv, dim=0)

        def attend(qh, add):
            scores = qh[0] @ k.transpose(-1, -2) / math.sqrt(D) + add  # (H, T, T)
            out = torch.softmax(scores, dim=-1) @ v  # (H, T, D)
            return attn.o_proj(out.transpose(0, 1).reshape(T, H * D))

        h_new = h + attend(qc, content_add)
        h_new = h_new + layer.mlp(layer.post_attention_layernorm(h_new))
        q = q + attend(qq, query_add)
        q = q + layer.mlp(layer.post_attention_layernorm(q))
        h = h_new
    return base.lm_head(net.norm(q))


@torch.no_grad()
def test_query_logits_equal_eager_reference(a3):
    """Mixed-size, non-monotone grouping: A3Model's logits == the hand-built reference."""
    ids = _ids(len(MIXED))[0].tolist()
    out = a3(torch.tensor([ids]), torch.tensor([MIXED])).logits[0]
    ref = reference_query_logits(a3, ids, MIXED)
    diff = (out[1:] - ref[1:]).abs().max().item()
    assert diff <= 1e-5, f"query-stream logits differ from the eager reference by {diff:.2e}"
    assert ref[1:].std().item() > 0.1, "reference logits are nearly constant; the comparison has no power"


@torch.no_grad()
def test_batched_groupings_equal_one_by_one(a3):
    """Two sequences with different groupings in one batch == each one on its own (reference)."""
    T = len(MIXED)
    ids = _ids(T, B=2, seed=5)
    other = [-1] + torch.randperm(T - 1, generator=torch.Generator().manual_seed(3)).tolist()
    g = torch.tensor([MIXED, other])
    out = a3(ids, g).logits
    for b in range(2):
        ref = reference_query_logits(a3, ids[b].tolist(), g[b].tolist())
        diff = (out[b, 1:] - ref[1:]).abs().max().item()
        assert diff <= 1e-5, f"batch row {b} differs from its reference by {diff:.2e}"


# ----------------------------------------------------------------------------------------------
# what a query sees


def _perturbed(ids: torch.Tensor, positions: list[int], vocab: int = 99) -> torch.Tensor:
    out = ids.clone()
    for p in positions:
        out[0, p] = (int(out[0, p]) + 17) % (vocab - 3) + 3  # a different real token id
    return out


@torch.no_grad()
def test_query_never_sees_own_token_group_or_later(a3):
    """Changing x_i, its group mates or any later group leaves the logits at i unchanged;
    changing a token of an earlier group moves them."""
    T = len(MIXED)
    ids = _ids(T, seed=7)
    g = torch.tensor([MIXED])
    base_logits = a3(ids, g).logits[0]
    for i in range(1, T):
        hidden = [j for j in range(1, T) if MIXED[j] >= MIXED[i]]  # self, same group, later groups
        assert i in hidden, "test setup: a position is always hidden from its own query"
        moved = (a3(_perturbed(ids, hidden), g).logits[0, i] - base_logits[i]).abs().max().item()
        assert moved <= 1e-6, (f"position {i} (group {MIXED[i]}) moved by {moved:.2e} when its own, "
                               f"same-group or later tokens {hidden} changed")
        earlier = [j for j in range(1, T) if MIXED[j] < MIXED[i]]
        if earlier:
            moved = (a3(_perturbed(ids, earlier), g).logits[0, i] - base_logits[i]).abs().max().item()
            assert moved > 1e-3, f"position {i} ignores its earlier-group tokens {earlier} (moved {moved:.2e})"


@torch.no_grad()
def test_query_sees_only_strictly_earlier_token_by_token(a3_llama):
    """One token at a time: perturbing j moves the logits at i iff g(j) < g(i)."""
    T = len(MIXED)
    ids = _ids(T, seed=11)
    g = torch.tensor([MIXED])
    base_logits = a3_llama(ids, g).logits[0]
    for j in range(1, T):
        moved = (a3_llama(_perturbed(ids, [j]), g).logits[0] - base_logits).abs().amax(-1)  # (T,)
        for i in range(1, T):
            if MIXED[j] < MIXED[i]:
                assert moved[i] > 1e-4, f"changing token {j} (group {MIXED[j]}) did not reach query {i} (group {MIXED[i]})"
            else:
                assert moved[i] <= 1e-6, f"changing token {j} (group {MIXED[j]}) leaked into query {i} (group {MIXED[i]})"


@torch.no_grad()
def test_every_query_sees_the_bos(a3):
    """Changing the BOS id moves the logits at every real position, even first-group ones."""
    T = len(MIXED)
    ids = _ids(T, seed=13)
    g = torch.tensor([MIXED])
    other = ids.clone()
    other[0, 0] = (int(ids[0, 0]) + 1) % 99
    moved = (a3(other, g).logits[0, 1:] - a3(ids, g).logits[0, 1:]).abs().amax(-1)
    assert bool((moved > 1e-4).all()), f"some queries ignore the BOS: per-position change {moved.tolist()}"


@torch.no_grad()
def test_padding_is_invisible(a3):
    """Changing padded token ids changes nothing at real positions, and a padded row equals
    the same sequence run alone."""
    T, n_real = len(MIXED), 9
    ids = _ids(T, B=2, seed=17)
    am = torch.ones(2, T, dtype=torch.long)
    am[1, n_real:] = 0
    g = torch.tensor([MIXED, MIXED])
    g[1, n_real:] = -5  # ids at padding are ignored, even invalid ones
    out = a3(ids, g, am).logits
    other = ids.clone()
    other[1, n_real:] = (other[1, n_real:] + 29) % 99
    out2 = a3(other, g, am).logits
    diff = (out[1, 1:n_real] - out2[1, 1:n_real]).abs().max().item()
    assert diff <= 1e-6, f"changing padded ids moved real positions by {diff:.2e}"
    alone = a3(ids[1:, :n_real], g[1:, :n_real]).logits[0]
    diff = (out[1, 1:n_real] - alone[1:]).abs().max().item()
    assert diff <= 1e-5, f"a padded row differs from the same sequence unpadded by {diff:.2e}"


def test_no_query_row_is_fully_masked(a3):
    """Every query row, the BOS's included, attends to at least one key: an all-masked row gives
    NaN in some attention kernels (and NaN * 0 in backward), so the BOS row must see the BOS."""
    import model.core.two_stream as ts
    seen = []
    real_sdpa = ts.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append(attn_mask)
        return real_sdpa(q, k, v, attn_mask=attn_mask, **kw)

    ids = torch.randint(3, 99, (2, 9))
    ids[:, 0] = 0
    g = torch.tensor([[0, 3, 1, 1, 2, 0, 5, 4, 2], [0, 0, 0, 1, 1, 2, 2, 3, 3]])
    am = torch.ones(2, 9, dtype=torch.long)
    am[1, -2:] = 0
    ts.F.scaled_dot_product_attention = spy
    try:
        out = a3(ids, g, am, labels=a3.default_labels(ids, am))
    finally:
        ts.F.scaled_dot_product_attention = real_sdpa
    assert seen and all(m is None or bool(m.any(-1).all()) for m in seen), "some attention row sees no key"
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in a3.parameters() if p.grad is not None), \
        "gradients must be finite"


def test_a_full_cache_grows_and_the_walks_give_the_same_states(a3_llama):
    """Walks that append past a cache's capacity grow it (KVCache.reserve): the same query states as
    the same walks on a cache preallocated large enough, and the filled slots unchanged."""
    from model.core.two_stream import KVCache, two_stream_walk

    torch.manual_seed(0)
    base, C = a3_llama.base, a3_llama.config.hidden_size
    ids = torch.randint(3, a3_llama.config.vocab_size, (2, 9))
    groups = torch.tensor([[-1, 0, 0, 0, 0, 1, 2, 3, 4]] * 2)
    outs = {}
    for cap in (3, 20):
        cache = KVCache.empty(base, 2, cap, "cpu", torch.float32)
        got = []
        for a, b in ((0, 5), (5, 7), (7, 9)):  # 5 rows into 3 slots, then 2 and 2 more
            pos = torch.arange(a, b).expand(2, -1)
            q_pos = torch.full((2, 1), min(b, 8))
            q, _ = two_stream_walk(base, a3_llama.embed(ids[:, a:b]), pos, groups[:, a:b],
                                   torch.ones(2, b - a, dtype=torch.bool), a3_llama.query_input(2, 1), q_pos,
                                   groups[:, min(b, 8):min(b, 8) + 1] + 1, cache=cache)
            got.append(q)
        assert cache.length == 9 and cache.k[0].shape[2] >= 9, f"cache of {cache.k[0].shape[2]} slots, length {cache.length}"
        outs[cap] = (got, cache)
    for i, (x, y) in enumerate(zip(outs[3][0], outs[20][0])):
        assert torch.allclose(x, y, atol=1e-6), f"walk {i}: a grown cache gives other query states"
    small, big = outs[3][1], outs[20][1]
    assert torch.equal(small.k[1][:, :, :9], big.k[1][:, :, :9]) and torch.equal(small.groups[:, :9], big.groups[:, :9]), \
        "growing moved or changed the filled slots"
