"""Fewer, larger products for CPU decoding: a layer's q, k and v projections as one bf16 weight, and
its MLP's gate and up projections as one (used by precision.apply_precision for bf16w and int8).

A cached decoding step on a CPU spends about as long calling its ~210 small products and the
operations around them as it spends reading their weights (`python -m model.bench --cpu-precision`:
step time against the bandwidth limit). Stacking the weights that read the same input cuts the
calls of a layer from seven to four and reads the same bytes:

    FusedQKV      [W_q; W_k; W_v] (H D + 2 Hkv D, C) bf16: two_stream_walk asks it for q of its
                  query rows and k, v of its content rows (`attn.a3_qkv`, replacing q/k/v_proj)
    FusedMLP      down(act(gate(x)) * up(x)) with [W_gate; W_up] (2 I, C) in one product
    fuse(base)    both, on every layer whose projections are Bf16Linear (int8 layers stay as they are)

The math is the same sums on the same bf16 weights in fp32 (bf16_linear.mm_bf16w): each output is
its own dot product, so stacking rows of W changes no result (tested bit for bit).
"""
from __future__ import annotations

import torch
from torch import nn

from .bf16_linear import Bf16Linear, linear_bf16w

ALL_ROWS_MAX = 16  # up to this many rows, q, k and v come from one product over every row


class FusedQKV(nn.Module):
    """q (for rows r0 on), k and v (for the first n rows) of a layer, from one stacked bf16 weight."""

    def __init__(self, q: Bf16Linear, k: Bf16Linear, v: Bf16Linear):
        super().__init__()
        self.nq, self.nk = q.out_features, k.out_features
        self.register_buffer("weight", torch.cat([q.weight, k.weight, v.weight]).contiguous())  # (Hq D + 2 Hkv D, C) bf16
        self.register_buffer("bias", _bias(q, k, v))

    def forward(self, a: torch.Tensor, n: int, r0: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """a (B, R, C) normed rows: (q of rows r0: (B, R - r0, H D), k and v of rows :n (B, n, Hkv D)).
        Few rows (a decoding step): one product over all rows, sliced (the unused rows cost no extra
        weight bytes). Many rows (encoding): q and k/v each over only the rows that need them, on
        row slices of the stacked weight."""
        B, R, _ = a.shape
        nq, nk = self.nq, self.nk
        if self.one_product(B * R):
            y = self.all_rows(a)  # (B, R, H D + 2 Hkv D)
            return y[:, r0:, :nq], y[:, :n, nq:nq + nk], y[:, :n, nq + nk:]
        w, b = self.weight, self.bias
        kv = linear_bf16w(a[:, :n], w[nq:], None if b is None else b[nq:])  # (B, n, 2 Hkv D)
        q = linear_bf16w(a[:, r0:], w[:nq], None if b is None else b[:nq])
        return q, kv[..., :nk], kv[..., nk:]

    @staticmethod
    def one_product(rows: int) -> bool:
        """Whether this many rows take all_rows (a decoding step) rather than a product each."""
        return rows <= ALL_ROWS_MAX

    def all_rows(self, a: torch.Tensor) -> torch.Tensor:
        """[q | k | v] of every row of a (B, R, C): (B, R, H D + 2 Hkv D), one product (a decoding
        step's few rows, where the rows that need only q or only k/v cost no extra bytes)."""
        return linear_bf16w(a, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"q={self.nq}, k=v={self.nk}, in_features={self.weight.shape[1]}, weight=bf16, math=fp32"


class FusedMLP(nn.Module):
    """A LLaMA MLP, down(act(gate(x)) * up(x)), with gate and up in one product."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        g, u = mlp.gate_proj, mlp.up_proj
        self.inter = g.out_features
        self.gate_up = Bf16Linear(torch.cat([g.weight, u.weight]).float(), _bias(g, u))  # (2 I, C), exact in bf16
        self.down_proj = mlp.down_proj
        self.act_fn = mlp.act_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gu = self.gate_up(x)  # (..., 2 I)
        step = getattr(self, "a3_step", None)  # step_ops.install: silu(gate) * up in one call
        if step is not None and gu.is_contiguous() and gu.device.type == "cpu":
            return self.down_proj(step.silu_mul(gu, self.inter))
        # the activation on a contiguous copy: its vector loop then splits the values as it does on
        # gate_proj's own output (a strided half puts the scalar tail elsewhere and moves a bit)
        return self.down_proj(self.act_fn(gu[..., :self.inter].contiguous()) * gu[..., self.inter:])


def _bias(*mods: Bf16Linear) -> torch.Tensor | None:
    """The stacked biases of these layers (zeros for a layer without one), or None if none has one."""
    if all(m.bias is None for m in mods):
        return None
    return torch.cat([m.bias if m.bias is not None else torch.zeros(m.out_features) for m in mods])


def fuse(base: nn.Module) -> int:
    """Fuse every layer of a LLaMA-family `base` whose projections are Bf16Linear (in place); returns
    the number of fusions made. A fused attention loses q_proj/k_proj/v_proj (the weights live
    once, in a3_qkv), so only two_stream_walk can run it: the app's and the benchmarks' path."""
    made = 0
    for layer in base.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        if all(isinstance(getattr(attn, n, None), Bf16Linear) for n in ("q_proj", "k_proj", "v_proj")):
            attn.a3_qkv = FusedQKV(attn.q_proj, attn.k_proj, attn.v_proj)
            del attn.q_proj, attn.k_proj, attn.v_proj
            made += 1
        if all(isinstance(getattr(mlp, n, None), Bf16Linear) for n in ("gate_proj", "up_proj")):
            layer.mlp = FusedMLP(mlp)
            made += 1
    return made
