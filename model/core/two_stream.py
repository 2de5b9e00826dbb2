"""The two-stream forward over a pretrained LLaMA-family decoder (the math; no I/O).

One function, `two_stream_walk`, runs both streams through every layer of the base model with
the base model's own modules (norms, q/k/v/o projections, rotary embedding, MLP, final norm):

    content rows  h: new tokens whose K/V join the key set        (what a token is)
    query rows    q: positions where a prediction is wanted      (where a token is wanted)
    per layer:  a = norm1([h; q]);  K, V = proj(a_h)  (content only);  Q = q_proj(a)
                [h; q] += o_proj(attn(Q, [cache K; K], [cache V; V], mask));  [h; q] += mlp(norm2(.))

The training forward is one walk with an empty cache (every position is a content row and a
query row); a cached decoding step is one walk whose content rows are the tokens committed last
step and whose query rows are the next targets, with the committed K/V appended to `KVCache`.
Masks come from group ids (groups.group_mask): content rows see g(j) <= g(i), query rows
g(j) < g(i). RoPE rotates every row at its own original position, keys at theirs.

Axis legend: B batch, N new content rows, M query rows, S keys (cache + new), H heads, Hkv key/value
heads, D head dim, C hidden size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import rotate_half

from .groups import group_mask


def check_backbone(base: nn.Module) -> None:
    """Refuse a causal LM whose layers are not the LLaMA pre-norm pattern this walk reuses."""
    net = getattr(base, "model", None)
    layers = getattr(net, "layers", None)
    if net is None or layers is None or not hasattr(base, "lm_head"):
        raise ValueError(f"{type(base).__name__} is not a LLaMA-family causal LM (needs .model.layers and .lm_head)")
    need = ("input_layernorm", "post_attention_layernorm", "mlp", "self_attn")
    attn_need = ("q_proj", "k_proj", "v_proj", "o_proj")
    for layer in layers:
        if not all(hasattr(layer, n) for n in need) or not all(hasattr(layer.self_attn, n) for n in attn_need):
            raise ValueError(f"{type(layer).__name__} does not have the LLaMA pre-norm layout; unsupported backbone")
    cfg = base.config
    sliding_layers = any(t == "sliding_attention" for t in (getattr(cfg, "layer_types", None) or []))
    if getattr(cfg, "use_sliding_window", False) or sliding_layers:
        raise ValueError("sliding-window attention is not supported; load the backbone without it")


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, R, D) rotated at its rows' positions; cos, sin (B, 1, R, D).

    transformers' apply_rotary_pos_emb(q, k, ...) with the same formula, for one tensor: it rotates
    a (q, k) pair, and the walk's q and k cover different rows, so each call would do twice the work.
    """
    return x * cos + rotate_half(x) * sin


RMS_NORMS = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm")  # weight * x / rms(x), in fp32


def rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """norm(x), as one fused op (F.rms_norm) for the LLaMA-style norms on fp32 rows: the same
    formula as their forward (bit for bit, tested), in one call instead of six; anything else
    (another norm, another dtype) runs the module itself."""
    if x.dtype == torch.float32 and type(norm).__name__ in RMS_NORMS and norm.weight.dtype == torch.float32:
        return F.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)
    return norm(x)


@dataclass
class KVCache:
    """Content-stream K/V of committed tokens, per layer, in commit order (preallocated; a walk
    that needs more slots grows it, `reserve`).

    k[l], v[l]: (B, Hkv, S_max, D), already rotated; groups: (B, S_max) their group ids;
    valid: (B, S_max) False for padding; length: how many slots are filled.
    """
    k: list[torch.Tensor]
    v: list[torch.Tensor]
    groups: torch.Tensor
    valid: torch.Tensor
    length: int = 0

    @classmethod
    def empty(cls, base: nn.Module, batch: int, max_len: int, device, dtype) -> "KVCache":
        cfg = base.config
        attn = base.model.layers[0].self_attn
        hkv, d = cfg.num_key_value_heads, attn.head_dim
        n_layers = len(base.model.layers)
        k = [torch.zeros(batch, hkv, max_len, d, device=device, dtype=dtype) for _ in range(n_layers)]
        v = [torch.zeros_like(t) for t in k]
        groups = torch.zeros(batch, max_len, dtype=torch.long, device=device)
        valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        return cls(k, v, groups, valid, 0)

    def reserve(self, n: int) -> None:
        """Room for n more slots: grown (copied into larger tensors) only when the filled slots plus
        n exceed the capacity, by at least GROW slots, so a walk never writes past the end."""
        cap = self.k[0].shape[2]
        if self.length + n <= cap:
            return
        extra = max(self.length + n - cap, self.GROW)

        def grow(t: torch.Tensor, dim: int) -> torch.Tensor:
            pad = list(t.shape)
            pad[dim] = extra
            return torch.cat([t, t.new_zeros(pad)], dim=dim)
        self.k, self.v = [grow(t, 2) for t in self.k], [grow(t, 2) for t in self.v]
        self.groups, self.valid = grow(self.groups, 1), grow(self.valid, 1)

    GROW = 32  # slots added at least when a cache grows

    def expand(self, rows: torch.Tensor, max_len: int) -> "KVCache":
        """A cache of len(rows) sequences, row b a copy of this cache's row rows[b], with room for
        max_len slots: one encoded context shared by several sequences (candidates of one story)."""
        def grow(t: torch.Tensor, dim: int) -> torch.Tensor:
            t = t.index_select(0, rows)
            pad = list(t.shape)
            pad[dim] = max_len - t.shape[dim]
            return torch.cat([t, t.new_zeros(pad)], dim=dim)
        return KVCache([grow(t, 2) for t in self.k], [grow(t, 2) for t in self.v], grow(self.groups, 1),
                       grow(self.valid, 1), self.length)


PACK_BELOW = 0.75  # a fused walk multiplies only its real rows when padding is over a quarter of them


def padded(valid: torch.Tensor) -> bool:
    """Whether rows with this validity (any shape, bool) are padded enough to multiply the real
    rows only (`rowwise`): under PACK_BELOW of them are real."""
    return int(valid.sum()) < PACK_BELOW * valid.numel()


def rowwise(f, t: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """f of the rows `keep` (flat indices) of t (B, R, C) only, as (B, R, F) with zeros elsewhere:
    the products of a padded batch without the padding (each row is its own sums, so the same)."""
    flat = t.reshape(-1, t.shape[-1])
    out = f(flat.index_select(0, keep))  # (K, F)
    full = out.new_zeros(flat.shape[0], out.shape[-1]).index_copy_(0, keep, out)
    return full.view(*t.shape[:-1], out.shape[-1])


def two_stream_walk(base: nn.Module,
                    h: torch.Tensor, h_pos: torch.Tensor, h_groups: torch.Tensor, h_valid: torch.Tensor,
                    q: torch.Tensor, q_pos: torch.Tensor, q_groups: torch.Tensor,
                    cache: KVCache | None = None, content_out: bool = False, q_valid: torch.Tensor | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run content rows h (B, N, C) and query rows q (B, M, C) through every layer.

    h_pos/q_pos: (B, N)/(B, M) original positions (RoPE); h_groups/q_groups: their group ids;
    h_valid: (B, N) False for padding (invisible as keys); q_valid: (B, M) False for padding query
    rows (their states come back as whatever; a fused model then skips them in its products).
    With a cache, the new K/V are written after its filled slots and its length advances by N.
    Returns (final-norm query states (B, M, C), final-norm content states (B, N, C) if
    content_out else None). Without content_out the last layer skips the content rows' own
    attention output and MLP, which nothing reads.
    """
    net = base.model
    B, N, _ = h.shape
    M = q.shape[1]
    # keys visible to this walk: the cache's filled slots, then the new content rows
    if cache is not None:
        cache.reserve(N)
        s0 = cache.length
        cache.groups[:, s0:s0 + N] = h_groups
        cache.valid[:, s0:s0 + N] = h_valid
        key_groups, key_valid = cache.groups[:, :s0 + N], cache.valid[:, :s0 + N]
    else:
        s0 = 0
        key_groups, key_valid = h_groups, h_valid
    # (B, 1, N+M, S): content rule for content rows, query rule for query rows
    mask = torch.cat([group_mask(key_groups, h_groups, strict=False, key_valid=key_valid),
                      group_mask(key_groups, q_groups, strict=True, key_valid=key_valid)], dim=2)
    if bool(mask.all()):
        mask = None  # the common decoding case: every key visible to every row
    x = torch.cat([h, q], dim=1)  # (B, N+M, C)
    cos_rows, sin_rows = net.rotary_emb(x, torch.cat([h_pos, q_pos], dim=1))  # (B, N+M, D)
    cos, sin = cos_rows[:, None], sin_rows[:, None]  # (B, 1, N+M, D), broadcast over heads
    cos_k, sin_k = cos[:, :, :N], sin[:, :, :N]  # the content rows' (the keys')
    n_layers = len(net.layers)
    # a fused (bf16w) batch whose rows are padded to different lengths: products over the real rows only
    keep = keep_last = None
    if q_valid is not None and hasattr(net.layers[0].self_attn, "a3_qkv") and not hasattr(net.layers[0].self_attn, "q_norm"):
        real = torch.cat([h_valid, q_valid], dim=1)  # (B, N+M)
        if padded(real):
            keep = real.flatten().nonzero().flatten()
            keep_last = real[:, N:].flatten().nonzero().flatten()  # the query rows' (the last layer's rows)
    for li, layer in enumerate(net.layers):
        attn = layer.self_attn
        D = attn.head_dim
        # at the last layer only the query rows need an output (unless the caller wants content)
        r0 = N if (li == n_layers - 1 and not content_out) else 0
        a = rms_norm(layer.input_layernorm, x)  # (B, N+M, C), pre-norm exactly as the base model
        fused = getattr(attn, "a3_qkv", None)  # backbones/fused.py (bf16w): q, k, v in one weight
        step = getattr(attn, "a3_step", None)  # backbones/step_ops.py (bf16w): rope and attention in one call each
        if fused is not None and (fused.one_product(B * (N + M)) or keep is not None) and not hasattr(attn, "q_norm"):
            # a decoding step's few rows (or a padded batch's real rows): q, k, v of every row in one
            # product, q and k rotated in one call (narrow, not [:, a:b] indexing: one operation, not three)
            y = fused.all_rows(a) if keep is None else rowwise(fused.all_rows, a, keep)  # (B, N+M, (H + 2 Hkv) D)
            nqk, H = fused.nq + fused.nk, fused.nq // D
            if step is not None:  # in place, from the (B, N+M, D) angles
                step.rope_(y, cos_rows, sin_rows, nqk // D, D)
                qk = y.narrow(2, 0, nqk).view(B, N + M, -1, D).transpose(1, 2)  # (B, H + Hkv, N+M, D)
            else:
                qk = rope(y.narrow(2, 0, nqk).view(B, N + M, -1, D).transpose(1, 2), cos, sin)
            qs = qk.narrow(1, 0, H) if r0 == 0 else qk.narrow(1, 0, H).narrow(2, r0, N + M - r0)  # (B, H, R, D)
            k = qk.narrow(1, H, qk.shape[1] - H).narrow(2, 0, N)  # (B, Hkv, N, D)
            v = y.narrow(1, 0, N).narrow(2, nqk, fused.nk).view(B, N, -1, D).transpose(1, 2)
        else:
            if fused is not None:
                qs, k, v = fused(a, N, r0)
            else:
                qs, k, v = attn.q_proj(a[:, r0:]), attn.k_proj(a[:, :N]), attn.v_proj(a[:, :N])
            k = k.view(B, N, -1, D)  # (B, N, Hkv, D)
            v = v.view(B, N, -1, D).transpose(1, 2)
            qs = qs.view(B, N + M - r0, -1, D)  # (B, R, H, D)
            if hasattr(attn, "q_norm"):  # Qwen3-style per-head norms
                qs, k = attn.q_norm(qs), attn.k_norm(k)
            qs, k = qs.transpose(1, 2), k.transpose(1, 2)
            qs = rope(qs, cos, sin) if r0 == 0 else rope(qs, cos[:, :, r0:], sin[:, :, r0:])
            k = rope(k, cos_k, sin_k)
        # on step_ops, attention reads the cache's filled slots itself (with the mask, where there is one)
        step_attn = step is not None and cache is not None and x.is_cpu
        if cache is not None:  # narrow: one view each (a [:, :, a:b] index is three)
            ck, cv = cache.k[li], cache.v[li]
            ck.narrow(2, s0, N).copy_(k)
            cv.narrow(2, s0, N).copy_(v)
            if not step_attn:
                k, v = ck.narrow(2, 0, s0 + N), cv.narrow(2, 0, s0 + N)
        m = mask if mask is None or r0 == 0 else mask[:, :, r0:]
        if step_attn:  # (B, R, H, D) out: o_proj's rows without a transpose
            o = step.attend(qs, ck, cv, s0 + N, attn.scaling, m).view(B, N + M - r0, -1)
        else:
            o = F.scaled_dot_product_attention(qs, k, v, attn_mask=m, scale=attn.scaling,
                                               enable_gqa=k.shape[1] != qs.shape[1])  # (B, H, R, D)
            o = o.transpose(1, 2).reshape(B, N + M - r0, -1)
        x = x if r0 == 0 else x.narrow(1, r0, N + M - r0)
        if keep is None:
            x = x + attn.o_proj(o)
            x = x + layer.mlp(rms_norm(layer.post_attention_layernorm, x))
        else:  # the real rows only; a padding row keeps its input, which nothing reads
            rows = keep if r0 == 0 else keep_last
            x = x + rowwise(attn.o_proj, o, rows)
            x = x + rowwise(lambda t: layer.mlp(rms_norm(layer.post_attention_layernorm, t)), x, rows)
    if cache is not None:
        cache.length = s0 + N
    q_out = rms_norm(net.norm, x[:, x.shape[1] - M:])
    return q_out, (rms_norm(net.norm, x[:, :N]) if content_out else None)
