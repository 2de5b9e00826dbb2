"""Inference precision of a loaded A3 model for decoding: fp32 (the reference) or fewer weight bytes.

    model = apply_precision(load_a3(path)[0], "bf16w")      # CPU decoding at half the weight bytes

At group size 1 a cached decoding step reads every weight once for two rows of activations, so
its time is about weight bytes over memory bandwidth (`python -m model.bench --precision ...`, the
measured ratio). The precisions:

- "fp32": as loaded; every exactness test and every likelihood the reports quote uses it.
- "bf16w": every nn.Linear of the backbone (projections, MLP, LM head) keeps its weight in
  bfloat16 and computes in fp32 (bf16_linear.Bf16Linear): half the bytes, and the activations
  are never rounded. A layer's q/k/v and its MLP's gate/up are then stacked into one weight each
  (fused.py): the same sums in fewer calls; the norms, rotary embedding, attention and SiLU of a
  decoding step run as one C++ call each (step_ops.py: the same formulas, summed in another
  order). The CPU default where it meets the agreement bars (docs/benchmarks).
- "bf16": every parameter in bfloat16, activations too (the logits still come out in fp32, see
  A3Model.head): the usual GPU inference dtype. On a CPU it rounds the activations at every
  layer and is slower than bf16w for the few-row matmuls of decoding.
- "int8": torch's dynamically quantized Linear (int8 weights, one scale per output channel,
  activations quantized per call) for the attention projections and the MLP's gate and up;
  down_proj and the LM head, whose inputs carry the model's outlier activations, stay bf16w.
  CPU only. A quarter of the bytes where it applies, and the least exact (docs/benchmarks).

The token embedding stays fp32 (a step looks up two of its rows); w, the norms, RoPE and the K/V
cache stay fp32. A merged model only (load_a3 merges adapters).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from . import step_ops
from .bf16_linear import Bf16Linear
from .fused import fuse

PRECISIONS = ("fp32", "bf16w", "bf16", "int8")
INT8_KEEP = ("down_proj", "lm_head")  # Linear layers int8 leaves in bf16w


def _replace_linears(base: nn.Module, make) -> None:
    """Swap every nn.Linear of `base` for make(name, linear) (None keeps it)."""
    for name, mod in list(base.named_modules()):
        if isinstance(mod, nn.Linear):
            new = make(name, mod)
            if new is not None:
                parent, _, attr = name.rpartition(".")
                setattr(base.get_submodule(parent) if parent else base, attr, new)


def apply_precision(model: nn.Module, precision: str) -> nn.Module:
    """The model in `precision` (in place; returns it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if getattr(model, "lora", None) is not None:
        raise ValueError("merge the adapter first (load_a3 does): the precisions apply to plain Linear layers")
    if precision == "fp32":
        return model.float()
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if model.device.type != "cpu":
        raise ValueError(f"{precision} runs on a CPU only; on a GPU use bf16")
    if precision == "int8":
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        spec = {n: per_channel_dynamic_qconfig for n, m in model.base.named_modules()
                if isinstance(m, nn.Linear) and not any(k in n for k in INT8_KEEP)}
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore")
            quantize_dynamic(model.base, spec, dtype=torch.qint8, inplace=True)
    _replace_linears(model.base, lambda name, lin: Bf16Linear.from_linear(lin))
    fuse(model.base)  # q/k/v and gate/up stacked where they are bf16 (fused.py): fewer, larger products
    step_ops.install(model.base)  # norms, rotary, attention and SiLU of a step in one call each (step_ops.py)
    model.precision = precision
    return model


def precision_of(model: nn.Module) -> str:
    """What apply_precision made of this model: "int8", "bf16" or "fp32"."""
    if getattr(model, "precision", None) in ("int8", "bf16w"):
        return model.precision
    return "bf16" if model.w.dtype == torch.bfloat16 else "fp32"


def weight_bytes(model: nn.Module) -> int:
    """Bytes of weights a group-size-1 decoding step reads: every Linear's weight (int8 plus its
    per-channel scale and zero point, or float), the norms and w; not the token embedding, of
    which a step reads two rows (a tied LM head is counted as the head)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    total = 0
    for m in model.base.modules():
        if isinstance(m, DynamicLinear):
            w = m.weight()
            total += w.numel() + 16 * w.shape[0]
        elif not isinstance(m, nn.Embedding):
            tensors = [*m.parameters(recurse=False), *m.buffers(recurse=False)]
            total += sum(t.numel() * t.element_size() for t in tensors if t.is_floating_point())
    return total + model.w.numel() * model.w.element_size()
