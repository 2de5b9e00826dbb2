"""The small operations of a CPU decoding step, one call each (bf16w): RMS norm, SiLU(gate) * up,
rotary embedding in place, and attention over the K/V cache.

Around a step's products, each of a layer's norms, rotary embedding, activation and attention is
a composite of PyTorch operations (an fp32 `F.rms_norm` on a CPU is ten, the rotary embedding
seven; `scaled_dot_product_attention` spends ~30 us setting up for two rows, ~0.5 ms with a mask),
each paying its dispatch: ~60 per layer, a third of the step. Here each is one C++ loop, compiled
like the bf16 kernel (bf16_linear.build_library) and called through ctypes:

    rms_norm(x, weight, eps)            weight * (x / sqrt(mean(x^2) + eps)), LlamaRMSNorm's formula
    silu_mul(gu, inter)                 silu(gu[..., :inter]) * gu[..., inter:] (a fused MLP's product)
    rope_(y, cos, sin, heads, dim)      y's first heads * dim columns rotated in place (rotate_half's
                                        formula, the same multiplications and sum: bit for bit)
    attend(q, k, v, length, scale, mask)  softmax(q k^T scale) v over the first `length` cache slots,
                                        under the walk's mask or none, (B, R, H, D) out
    install(base)                       the norms as StepRMSNorm, and the walk told to use the rest

They are the same formulas in fp32, summed in another order than PyTorch's kernels (the norm's
mean, the attention's dot products, a polynomial exp): within a few units in the last place
(tests/test_step_ops.py), used for bf16w only, whose agreement with fp32 the benchmark measures.
Every row is its own loop, so a row's result does not depend on the rows decoded beside it.
Where the kernel did not build, `install` changes nothing.
"""
from __future__ import annotations

import ctypes
import subprocess
import threading

import torch
from torch import nn

from .bf16_linear import build_library, kernels_enabled

RMS_NAMES = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm")
ATTEND_SPLIT_MIN = 1 << 18  # B H R S D multiply-adds from which attention splits over torch's threads

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__AVX512F__)
#include <immintrin.h>
/* exp(x), x <= 0 here: 2^n exp(r), |r| <= ln2 / 2, Cephes' polynomial (about 1 ulp) */
static inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}
#endif

/* the sum of x[0..n) in 16 interleaved partial sums (vectorizes without reassociating) */
static inline float sum16(const float* x, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += x[i + j];
  float s = 0.f;
  for (int j = 0; j < 16; ++j) s += acc[j];
  for (; i < n; ++i) s += x[i];
  return s;
}

static inline float dot16(const float* a, const float* b, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0.f;
  for (int j = 0; j < 16; ++j) s += acc[j];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

/* y (R, C) = w * (x * (1 / sqrt(mean(x^2) + eps))) */
extern "C" void rms_norm_f32(const float* x, const float* w, float* y, int64_t R, int64_t C, float eps) {
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    float ss = dot16(xr, xr, C);
    float inv = 1.0f / sqrtf(ss / (float)C + eps);
    for (int64_t c = 0; c < C; ++c) yr[c] = w[c] * (xr[c] * inv);
  }
}

/* y (R, I) = silu(gu[:, :I]) * gu[:, I:], silu(g) = g / (1 + exp(-g)) */
extern "C" void silu_mul_f32(const float* gu, float* y, int64_t R, int64_t I) {
  for (int64_t r = 0; r < R; ++r) {
    const float* g = gu + r * 2 * I;
    const float* u = g + I;
    float* yr = y + r * I;
    int64_t i = 0;
#if defined(__AVX512F__)
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= I; i += 16) {
      __m512 gv = _mm512_loadu_ps(g + i);
      __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
      __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
      _mm512_storeu_ps(yr + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
#endif
    for (; i < I; ++i) yr[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
  }
}

/* in place, each of R rows (stride F): heads x D columns, x cos + rotate_half(x) sin per head,
   rotate_half(x) = [-x[D/2:], x[:D/2]]; cos, sin (R, D). Two products and a sum, as PyTorch's. */
extern "C" void rope_f32(float* y, const float* cos_, const float* sin_, int64_t R, int64_t F, int64_t heads, int64_t D) {
  int64_t h2 = D / 2;
  float tmp[512];
  for (int64_t r = 0; r < R; ++r) {
    const float* c = cos_ + r * D;
    const float* s = sin_ + r * D;
    for (int64_t h = 0; h < heads; ++h) {
      float* x = y + r * F + h * D;
      for (int64_t i = 0; i < D; ++i) tmp[i] = x[i];
      for (int64_t i = 0; i < h2; ++i) {
        float a = tmp[i] * c[i], b = -tmp[i + h2] * s[i];
        x[i] = a + b;
      }
      for (int64_t i = h2; i < D; ++i) {
        float a = tmp[i] * c[i], b = tmp[i - h2] * s[i];
        x[i] = a + b;
      }
    }
  }
}

/* o (B, R, H, D) = softmax(q k^T scale) v over the first S slots; q (B, H, R, D) with strides
   (qb, qh, qr), k and v (B, Hkv, *, D) with strides (kb, kh, ks); D <= 512. mask: null (every key
   visible: a decoding step) or (B, R, S) bytes with strides (mb, mr, 1), key j visible to row r
   where nonzero; a row that sees no key gets zeros (a padding row, which nothing reads). Each
   (b, h) pair is one task; `threads` of them run at once, each row its own loop. */
extern "C" void attend_f32(const float* q, int64_t qb, int64_t qh, int64_t qr, const float* k, const float* v,
                           int64_t kb, int64_t kh, int64_t ks, float* o, int64_t B, int64_t H, int64_t Hkv,
                           int64_t R, int64_t S, int64_t D, float scale, const uint8_t* mask, int64_t mb,
                           int64_t mr, int threads) {
  int64_t rep = H / Hkv;
  #pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      float stack[4096], acc[512];
      float* p = S <= 4096 ? stack : (float*)malloc(S * sizeof(float));
      const float* kh_ = k + b * kb + (h / rep) * kh;
      const float* vh = v + b * kb + (h / rep) * kh;
      for (int64_t r = 0; r < R; ++r) {
        const float* qv = q + b * qb + h * qh + r * qr;
        const uint8_t* mrow = mask ? mask + b * mb + r * mr : nullptr;
        float* out = o + ((b * R + r) * H + h) * D;
        float m = -INFINITY, z = 0.f;
        int64_t j = 0;
#if defined(__AVX512F__)
        if (D % 16 == 0 && D <= 256) {
          int64_t nv = D / 16;
          __m512 x[16];
          for (int64_t c = 0; c < nv; ++c) x[c] = _mm512_loadu_ps(qv + 16 * c);
          for (j = 0; j < S; ++j) {  /* scores; a hidden key's weight is exactly 0 below */
            if (mrow && !mrow[j]) { p[j] = -INFINITY; continue; }
            const float* kj = kh_ + j * ks;
            __m512 d = _mm512_mul_ps(x[0], _mm512_loadu_ps(kj));
            for (int64_t c = 1; c < nv; ++c) d = _mm512_fmadd_ps(x[c], _mm512_loadu_ps(kj + 16 * c), d);
            p[j] = _mm512_reduce_add_ps(d) * scale;
            m = p[j] > m ? p[j] : m;
          }
          if (m == -INFINITY) { for (int64_t d = 0; d < D; ++d) out[d] = 0.f; continue; }  /* padding */
          __m512 mv = _mm512_set1_ps(m), zv = _mm512_setzero_ps();
          for (j = 0; j + 16 <= S; j += 16) {  /* exp16 clamps -inf to exp(-87): mask the hidden keys to 0 */
            __m512 y = _mm512_loadu_ps(p + j);
            __mmask16 seen = _mm512_cmp_ps_mask(y, _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ);
            __m512 e = _mm512_maskz_mov_ps(seen, exp16(_mm512_sub_ps(y, mv)));
            _mm512_storeu_ps(p + j, e);
            zv = _mm512_add_ps(zv, e);
          }
          z = _mm512_reduce_add_ps(zv);
          for (; j < S; ++j) { p[j] = expf(p[j] - m); z += p[j]; }
          for (int64_t c = 0; c < nv; ++c) x[c] = _mm512_setzero_ps();
          for (int64_t t = 0; t < S; ++t) {
            if (p[t] == 0.f) continue;
            __m512 pt = _mm512_set1_ps(p[t]);
            for (int64_t c = 0; c < nv; ++c) x[c] = _mm512_fmadd_ps(pt, _mm512_loadu_ps(vh + t * ks + 16 * c), x[c]);
          }
          __m512 iz = _mm512_set1_ps(z);
          for (int64_t c = 0; c < nv; ++c) _mm512_storeu_ps(out + 16 * c, _mm512_div_ps(x[c], iz));
          continue;
        }
#endif
        for (j = 0; j < S; ++j) {
          p[j] = (mrow && !mrow[j]) ? -INFINITY : dot16(qv, kh_ + j * ks, D) * scale;
          m = p[j] > m ? p[j] : m;
        }
        for (int64_t d = 0; d < D; ++d) acc[d] = 0.f;
        if (m != -INFINITY) {  /* else a row that sees no key (padding): zeros */
          for (j = 0; j < S; ++j) { p[j] = expf(p[j] - m); z += p[j]; }
          for (int64_t t = 0; t < S; ++t)
            for (int64_t d = 0; d < D && p[t] != 0.f; ++d) acc[d] += p[t] * vh[t * ks + d];
        }
        for (int64_t d = 0; d < D; ++d) out[d] = m == -INFINITY ? 0.f : acc[d] / z;
      }
      if (p != stack) free(p);
    }
}
"""

_LIB = None
_TRIED = False
_LOCK = threading.Lock()
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES = {
    "rms_norm_f32": [_PTR, _PTR, _PTR, _I64, _I64, ctypes.c_float],
    "silu_mul_f32": [_PTR, _PTR, _I64, _I64],
    "rope_f32": [_PTR, _PTR, _PTR, _I64, _I64, _I64, _I64],
    "attend_f32": [_PTR, _I64, _I64, _I64, _PTR, _PTR, _I64, _I64, _I64, _PTR, _I64, _I64, _I64, _I64, _I64, _I64,
                   ctypes.c_float, _PTR, _I64, _I64, ctypes.c_int],
}


def _lib():
    """The compiled step operations (a ctypes library), or None where they cannot be built
    (A3_BF16_KERNEL=0 turns them off with the bf16 kernel)."""
    global _LIB, _TRIED
    with _LOCK:
        if not _TRIED:
            _TRIED = True
            if kernels_enabled():
                try:
                    lib = build_library(_SOURCE, "step")
                    for name, args in _SIGNATURES.items():
                        getattr(lib, name).argtypes, getattr(lib, name).restype = args, None
                    _LIB = lib
                except (OSError, subprocess.SubprocessError):
                    _LIB = None
        return _LIB


def _p(t: torch.Tensor) -> int:
    return t.data_ptr()


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x (..., C) fp32 contiguous: weight * (x * rsqrt(mean(x^2) + eps)), row by row."""
    if not x.is_contiguous():
        x = x.contiguous()
    C = x.shape[-1]
    y = torch.empty_like(x)
    _lib().rms_norm_f32(_p(x), _p(weight), _p(y), x.numel() // C, C, eps)
    return y


def silu_mul(gu: torch.Tensor, inter: int) -> torch.Tensor:
    """gu (..., 2 I) contiguous [gate | up]: silu(gate) * up, (..., I)."""
    y = torch.empty(*gu.shape[:-1], inter, dtype=torch.float32)
    _lib().silu_mul_f32(_p(gu), _p(y), gu.numel() // (2 * inter), inter)
    return y


def rope_(y: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int, dim: int) -> None:
    """Rotate, in place, the first heads * dim columns of y (B, R, F) contiguous, head by head, at
    the positions whose cos, sin (B, R, dim) contiguous are given: x cos + rotate_half(x) sin."""
    R = y.numel() // y.shape[-1]
    _lib().rope_f32(_p(y), _p(cos), _p(sin), R, y.shape[-1], heads, dim)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int, scale: float,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """q (B, H, R, D) (any strides, D contiguous), k and v (B, Hkv, S, D) contiguous caches of which
    the first `length` slots count: attention as (B, R, H, D) contiguous (o_proj's input without a
    transpose). Query head h reads K/V head h // (H / Hkv). mask: None (every key visible) or bool
    (B, 1, R, length), True where a row sees a key (two_stream_walk's, any strides but the last);
    a row that sees no key gets zeros. Large batches split their (b, h) pairs over torch's threads."""
    B, H, R, D = q.shape
    Hkv = k.shape[1]
    if q.stride(3) != 1 or not (k.is_contiguous() and v.is_contiguous()) or H % Hkv or D > 512:
        raise ValueError("attend needs rows of D <= 512 contiguous values, contiguous caches and H a multiple of Hkv")
    mb = mr = 0
    if mask is not None:
        if mask.shape != (B, 1, R, length) or mask.dtype != torch.bool:
            raise ValueError(f"attend's mask must be bool (B, 1, R, length) = {(B, 1, R, length)}; got {tuple(mask.shape)}")
        if mask.stride(3) != 1:
            mask = mask.contiguous()
        mb, mr = mask.stride(0), mask.stride(2)
    threads = torch.get_num_threads() if B * H * R * length * D >= ATTEND_SPLIT_MIN else 1
    o = torch.empty(B, R, H, D, dtype=torch.float32)
    _lib().attend_f32(_p(q), q.stride(0), q.stride(1), q.stride(2), _p(k), _p(v), k.stride(0), k.stride(1),
                      k.stride(2), _p(o), B, H, Hkv, R, length, D, scale, None if mask is None else _p(mask),
                      mb, mr, threads)
    return o


class StepRMSNorm(nn.Module):
    """A LLaMA-style RMS norm through `rms_norm` (fp32 rows; anything else through the formula)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.weight = nn.Parameter(norm.weight.detach().float(), requires_grad=False)
        self.variance_epsilon = float(norm.variance_epsilon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and x.device.type == "cpu" and _lib() is not None:
            return rms_norm(x, self.weight, self.variance_epsilon)
        var = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(var + self.variance_epsilon)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}, one call (step_ops)"


class StepOps:
    """What a marked module holds as `a3_step` (install): rope_, attend and silu_mul, which
    two_stream_walk and FusedMLP call without importing this module (model/core never imports a
    backbone's code; it asks the module it runs)."""

    rope_ = staticmethod(rope_)
    attend = staticmethod(attend)
    silu_mul = staticmethod(silu_mul)


def install(base: nn.Module) -> int:
    """Route a fused bf16w `base` (fused.fuse) through these operations, in place: its RMS norms
    become StepRMSNorm, and each layer's fused attention and SiLU MLP hold a StepOps (`a3_step`),
    which two_stream_walk and FusedMLP use. Returns the number of modules changed (0 without the
    kernel, which leaves the model as it was)."""
    if _lib() is None:
        return 0
    made = 0
    for parent in [base.model, *base.model.layers]:
        for name, mod in list(parent.named_children()):
            if type(mod).__name__ in RMS_NAMES and getattr(mod, "weight", None) is not None:
                setattr(parent, name, StepRMSNorm(mod))
                made += 1
    for layer in base.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        if hasattr(attn, "a3_qkv") and not hasattr(attn, "q_norm"):
            attn.a3_step = StepOps()
            made += 1
        if hasattr(mlp, "gate_up") and type(mlp.act_fn).__name__ in ("SiLU", "SiLUActivation"):
            mlp.a3_step = StepOps()
            made += 1
    return made
