"""The step operations (model/backbones/step_ops.py) against the PyTorch code they replace: the
same formulas in fp32, so within a few units in the last place (the rotary embedding bit for bit),
and a model routed through them decodes as the bf16w model without them."""
import pytest
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from model.backbones import step_ops
from model.backbones.bf16_linear import Bf16Linear
from model.backbones.fused import fuse
from model.backbones.lora import load_a3
from model.backbones.precision import _replace_linears, apply_precision
from model.core.two_stream import rope
from test_fused import decoded_pairs

pytestmark = pytest.mark.skipif(step_ops._lib() is None, reason="the step kernel did not build here (no g++)")


def close(got: torch.Tensor, want: torch.Tensor, what: str, rel: float = 2e-6) -> None:
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, want {tuple(want.shape)}"
    err = ((got - want).abs() / want.abs().max()).max().item()
    assert err <= rel, f"{what}: relative error {err:.2e} over {rel:.0e}"


@pytest.mark.parametrize("width", [576, 40, 7])
def test_rms_norm_is_llama_rms_norm(width):
    torch.manual_seed(0)
    norm = LlamaRMSNorm(width, eps=1e-5)
    norm.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, width) * 4
    close(step_ops.StepRMSNorm(norm)(x), norm(x), f"norm of width {width}")
    close(step_ops.StepRMSNorm(norm)(x[:, 1:4]), norm(x[:, 1:4]), "a non-contiguous slice")


@pytest.mark.parametrize("inter", [1536, 72, 5])
def test_silu_mul_is_silu_of_gate_times_up(inter):
    torch.manual_seed(0)
    gu = torch.randn(2, 3, 2 * inter) * 6  # gates from -25 to 25: both tails of the exp
    want = F.silu(gu[..., :inter]) * gu[..., inter:]
    close(step_ops.silu_mul(gu, inter), want, f"silu * up, {inter} wide", rel=4e-6)


@pytest.mark.parametrize("dim", [64, 24])
def test_rope_in_place_is_the_walks_rope_bit_for_bit(dim):
    """Rotating q and k heads in the fused product's columns, in place, leaves v alone."""
    torch.manual_seed(0)
    B, R, heads, kv = 2, 3, 6, 2
    y = torch.randn(B, R, (heads + 2 * kv) * dim)
    cos, sin = torch.randn(B, R, dim), torch.randn(B, R, dim)
    n = (heads + kv) * dim
    view = lambda t: t.narrow(2, 0, n).view(B, R, -1, dim).transpose(1, 2)  # noqa: E731
    want = rope(view(y), cos[:, None], sin[:, None])
    got = y.clone()
    step_ops.rope_(got, cos, sin, heads + kv, dim)
    assert torch.equal(view(got), want), f"rope: max diff {(view(got) - want).abs().max():.2e}, want 0"
    assert torch.equal(got[..., n:], y[..., n:]), "the v columns are not touched"


@pytest.mark.parametrize("dim", [64, 24])
@pytest.mark.parametrize("length", [1, 16, 37])
def test_attend_is_sdpa_over_the_filled_cache(dim, length):
    """Grouped heads (9 query heads on 3 K/V heads), q as the walk's strided view, a cache longer
    than its filled slots: sdpa over those slots, as (B, R, H, D)."""
    torch.manual_seed(0)
    B, R, H, Hkv = 2, 2, 9, 3
    q = torch.randn(B, R, H, dim).transpose(1, 2)  # (B, H, R, D), not contiguous
    k, v = torch.randn(B, Hkv, 50, dim), torch.randn(B, Hkv, 50, dim)
    want = F.scaled_dot_product_attention(q, k[:, :, :length], v[:, :, :length], scale=dim ** -0.5,
                                          enable_gqa=True).transpose(1, 2)
    close(step_ops.attend(q, k, v, length, dim ** -0.5), want, f"attention over {length} slots", rel=4e-6)
    with pytest.raises(ValueError, match="contiguous caches"):
        step_ops.attend(q, k.transpose(2, 3), v, length, 0.1)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("D", [64, 24])  # the vector path, and the scalar one
def test_attend_with_a_mask_is_sdpa_with_it(split, D, monkeypatch):
    """The walk's bool mask (B, 1, R, S), as a view with the content rows cut off: sdpa with the
    same mask, on one thread and split over threads; a row that sees no key (padding) gets zeros."""
    monkeypatch.setattr(step_ops, "ATTEND_SPLIT_MIN", 0 if split else 1 << 62)
    torch.manual_seed(0)
    B, R, H, Hkv, S = 3, 7, 9, 3, 29
    q = torch.randn(B, R, H, D).transpose(1, 2)
    k, v = torch.randn(B, Hkv, 40, D), torch.randn(B, Hkv, 40, D)
    full = torch.rand(B, 1, R + 2, S) > 0.4
    full[..., 0] = True
    full[1, 0, 5] = False  # a padding row
    mask = full[:, :, 2:]  # (B, 1, R, S), strided
    want = F.scaled_dot_product_attention(q, k[:, :, :S], v[:, :, :S], attn_mask=mask, scale=0.125,
                                          enable_gqa=True).transpose(1, 2)
    got = step_ops.attend(q, k, v, S, 0.125, mask)
    seen = mask[:, 0].any(-1)  # (B, R)
    close(got[seen], want[seen], "masked attention", rel=4e-6)
    assert torch.equal(got[~seen], torch.zeros_like(got[~seen])), "a row that sees no key gets zeros"
    with pytest.raises(ValueError, match="mask must be bool"):
        step_ops.attend(q, k, v, S, 0.125, mask[..., 1:])


def _tiny(step: bool):
    """The shipped tiny model in bf16w, fused, with or without the step operations."""
    model, tok = load_a3("assets/a3-austen-tiny")
    _replace_linears(model.base, lambda name, lin: Bf16Linear.from_linear(lin))
    fuse(model.base)
    made = step_ops.install(model.base) if step else 0
    return model, tok, made


def test_a_model_on_step_ops_decodes_as_without_them():
    """The same fill and probabilities within 1e-5 at every step, for left to right and a
    confidence order in groups of 2; apply_precision('bf16w') installs them on every layer."""
    with_ops, tok, made = _tiny(True)
    without, _, _ = _tiny(False)
    n_layers = len(with_ops.base.model.layers)
    assert made == 4 * n_layers + 1, f"two norms, the attention and the MLP of each layer, and the final norm: {made}"
    full = apply_precision(load_a3("assets/a3-austen-tiny")[0], "bf16w")
    assert all(hasattr(l.self_attn, "a3_step") for l in full.base.model.layers), "apply_precision installs them"
    for cfg, a, b in decoded_pairs(with_ops, without, tok):
        assert a.output_ids == b.output_ids, f"{cfg.strategy}: the same fill with and without the step operations"
        pa = torch.tensor([p for s in a.steps for p in s.probs])
        pb = torch.tensor([p for s in b.steps for p in s.probs])
        assert (pa - pb).abs().max() < 1e-5, f"{cfg.strategy}: probabilities within 1e-5: {pa} vs {pb}"


def test_a_row_computes_the_same_beside_other_rows():
    """Each row is its own loop: a batch of rows gives, bit for bit, what each row gives alone
    (the app's engine decodes users' rows together)."""
    torch.manual_seed(0)
    x, w = torch.randn(4, 3, 40), torch.rand(40) + 0.5
    gu = torch.randn(4, 3, 144)
    q, k, v = torch.randn(4, 6, 2, 32), torch.randn(4, 2, 20, 32), torch.randn(4, 2, 20, 32)
    for b in range(4):
        assert torch.equal(step_ops.rms_norm(x, w, 1e-5)[b], step_ops.rms_norm(x[b:b + 1], w, 1e-5)[0]), f"norm, row {b}"
        assert torch.equal(step_ops.silu_mul(gu, 72)[b], step_ops.silu_mul(gu[b:b + 1].clone(), 72)[0]), f"silu, row {b}"
        alone = step_ops.attend(q[b:b + 1], k[b:b + 1].clone(), v[b:b + 1].clone(), 13, 0.2)[0]
        assert torch.equal(step_ops.attend(q, k, v, 13, 0.2)[b], alone), f"attention, row {b}"
        m = torch.rand(4, 1, 2, 13, generator=torch.Generator().manual_seed(b)) > 0.3
        alone = step_ops.attend(q[b:b + 1], k[b:b + 1].clone(), v[b:b + 1].clone(), 13, 0.2, m[b:b + 1])[0]
        assert torch.equal(step_ops.attend(q, k, v, 13, 0.2, m)[b], alone), f"masked attention, row {b}"


def test_without_the_kernel_install_changes_nothing(monkeypatch):
    monkeypatch.setattr(step_ops, "_lib", lambda: None)
    model, _, made = _tiny(True)
    assert made == 0, "no kernel, nothing installed"
    assert type(model.base.model.norm).__name__ == "LlamaRMSNorm", "the norms stay PyTorch's"
    assert not any(hasattr(m, "a3_step") for m in model.modules()), "nothing is marked for the walk"


@pytest.mark.parametrize("precision", ["bf16w", "fp32"])
def test_a_padded_batch_multiplies_only_its_real_rows(precision, monkeypatch):
    """The orders pool (queries per row from 1 to every open blank) decoded with the padding rows
    skipped in the products and the LM head (two_stream.rowwise) and with them computed: the same
    fills; on bf16w with its step operations, which compute each row alone, the same probabilities
    bit for bit (PyTorch's own SiLU is not: where its vector loop ends depends on the row count)."""
    import model.core.two_stream as ts
    from model.core.candidates import candidate_batch, pool_configs
    from model.core.decode import run_batch
    model, tok = load_a3("assets/a3-austen-tiny")
    apply_precision(model, precision)
    ids = [tok.bos_token_id] + tok.encode("It is a truth universally acknowledged, that a single man in "
                                          "possession of a good fortune, must be in want of a wife.")
    mask = [False] * len(ids)
    mask[5:15] = [True] * 10
    rows, cfgs = candidate_batch([(ids, mask, None, 10)], pool_configs("orders", 8))
    calls = []
    real_rowwise = ts.rowwise
    monkeypatch.setattr(ts, "rowwise", lambda *a: calls.append(1) or real_rowwise(*a))
    runs = {}
    for below in (0.0, 1.0):  # never pack; pack whenever a row is padding
        monkeypatch.setattr(ts, "PACK_BELOW", below)
        calls.clear()
        runs[below] = run_batch(model, [(r[0], r[1]) for r in rows], cfgs, tok)
        assert bool(calls) == (below == 1.0 and precision == "bf16w"), \
            f"PACK_BELOW={below}, {precision}: rowwise products used {len(calls)} times"
    for i, (a, b) in enumerate(zip(runs[1.0], runs[0.0])):
        assert a.output_ids == b.output_ids, f"row {i} ({cfgs[i].strategy}): the same fill packed and padded"
        pa = torch.tensor([p for s in a.steps for p in s.probs])
        pb = torch.tensor([p for s in b.steps for p in s.probs])
        if precision == "bf16w":
            assert torch.equal(pa, pb), f"row {i}: bit for bit, max diff {(pa - pb).abs().max():.2e}"
        else:
            assert (pa - pb).abs().max() < 1e-5, f"row {i}: within 1e-5, max diff {(pa - pb).abs().max():.2e}"
