"""The fused bf16w products (model/backbones/fused.py) and the walk's one-call norm (two_stream.rms_norm)
against the modules they replace: the same sums on the same weights, so bit for bit equal."""
import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from model.backbones.bf16_linear import Bf16Linear
from model.backbones.fused import ALL_ROWS_MAX, FusedMLP, FusedQKV, fuse
from model.backbones.lora import load_a3
from model.backbones.precision import apply_precision, weight_bytes
from model.core.decode import DecodeConfig, run
from model.core.two_stream import rms_norm


def tiny_llama(bias: bool = False, hidden: int = 40, inter: int = 72) -> LlamaForCausalLM:
    """Widths that are not multiples of 16 exercise the kernel's tails (bit for bit there too)."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, attention_bias=bias, mlp_bias=bias)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows,n,r0", [(2, 1, 0), (ALL_ROWS_MAX, 5, 0), (ALL_ROWS_MAX + 3, 10, 10), (40, 20, 0)])
def test_fused_qkv_equals_the_three_projections(bias, rows, n, r0):
    """Few rows (one product over all, sliced) and many rows (q and k/v on row slices of the
    stacked weight): q of rows r0:, k and v of rows :n, exactly as q/k/v_proj give them."""
    attn = tiny_llama(bias).model.layers[0].self_attn
    q, k, v = (Bf16Linear.from_linear(getattr(attn, f"{p}_proj")) for p in "qkv")
    fused = FusedQKV(q, k, v)
    a = torch.randn(1, rows, 40)
    fq, fk, fv = fused(a, n, r0)
    for name, got, want in (("q", fq, q(a[:, r0:])), ("k", fk, k(a[:, :n])), ("v", fv, v(a[:, :n]))):
        assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)}, want {tuple(want.shape)}"
        assert torch.equal(got, want), f"{name}: max diff {(got - want).abs().max():.2e} (should be bit for bit)"


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("inter", [96, 72, 688])
def test_fused_mlp_equals_the_llama_mlp_on_bf16_weights(bias, inter):
    mlp = tiny_llama(bias, 48, inter).model.layers[0].mlp
    for p in ("gate_proj", "up_proj", "down_proj"):
        setattr(mlp, p, Bf16Linear.from_linear(getattr(mlp, p)))
    x = torch.randn(3, 7, 48)
    want, got = mlp(x), FusedMLP(mlp)(x)
    assert torch.equal(got, want), f"gate and up stacked: max diff {(got - want).abs().max():.2e}, want 0"


def test_rms_norm_is_the_module_bit_for_bit():
    norm = tiny_llama().model.norm
    norm.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 9, 40) * 3
    assert torch.equal(rms_norm(norm, x), norm(x)), "F.rms_norm is LlamaRMSNorm's formula in fp32"
    xb = x.to(torch.bfloat16)
    nb = copy.deepcopy(norm).to(torch.bfloat16)
    assert torch.equal(rms_norm(nb, xb), nb(xb)), "other dtypes run the module itself"


def decoded_pairs(model_a, model_b, tok):
    """(config, run of model_a, run of model_b) on one Austen sentence with a 7-token blank, left to
    right and in a confidence order of groups of 2: two models that should decode alike."""
    ids = [tok.bos_token_id] + tok.encode("It is a truth universally acknowledged, that a single man in "
                                          "possession of a good fortune, must be in want of a wife.")
    mask = [False] * len(ids)
    mask[5:12] = [True] * 7
    for cfg in (DecodeConfig(), DecodeConfig(strategy="confidence", group_size=2)):
        yield cfg, run(model_a, ids, mask, cfg, tok), run(model_b, ids, mask, cfg, tok)


def test_a_fused_model_decodes_as_the_unfused_bf16w_model():
    """The shipped tiny model in bf16w, fused (as apply_precision does, before its step operations,
    tests/test_step_ops.py) and not: the same tokens and the same probabilities at every step, and
    the same weight bytes."""
    from model.backbones.precision import _replace_linears
    layers = apply_precision(load_a3("assets/a3-austen-tiny")[0], "bf16w").base.model.layers
    assert all(hasattr(l.self_attn, "a3_qkv") and isinstance(l.mlp, FusedMLP) for l in layers), \
        "apply_precision('bf16w') fuses every layer"
    plain, unfused = load_a3("assets/a3-austen-tiny")[0], load_a3("assets/a3-austen-tiny")[0]
    tok = load_a3("assets/a3-austen-tiny")[1]
    for m in (plain, unfused):
        _replace_linears(m.base, lambda name, lin: Bf16Linear.from_linear(lin))
    fuse(plain.base)
    layers = plain.base.model.layers
    assert not hasattr(layers[0].self_attn, "q_proj"), "the stacked weight is the only copy"
    assert weight_bytes(plain) == weight_bytes(unfused), "fusing reads the same weight bytes"
    for cfg, a, b in decoded_pairs(plain, unfused, tok):
        assert a.output_ids == b.output_ids, f"{cfg.strategy}: fused and unfused write the same fill"
        pa = [p for s in a.steps for p in s.probs]
        pb = [p for s in b.steps for p in s.probs]
        assert pa == pb, f"{cfg.strategy}: the same probabilities at every step: {pa} vs {pb}"


def test_fuse_leaves_int8_layers_alone():
    base = tiny_llama()
    assert fuse(base) == 0, "nn.Linear (not Bf16Linear) projections are not fused"
    assert hasattr(base.model.layers[0].self_attn, "q_proj"), "unfused layers keep their projections"
