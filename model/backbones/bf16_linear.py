"""Linear layers that keep their weights in bfloat16 and compute in fp32, for CPU decoding.

A cached decoding step multiplies a few rows of activations (one per target) by every weight
matrix: its time is the bytes of weights read. bf16 weights halve those bytes. Casting the
activations to bf16 as well (a plain bf16 matmul) would round them at every layer, and 30 layers
of that move the probabilities a user sees by up to 0.07; keeping the activations and the sums in
fp32 keeps them within 0.02 (docs/benchmarks, the agreement table). PyTorch has no CPU matmul
of fp32 activations by bf16 weights, so this module runs a small C++ kernel (_SOURCE), compiled
once by g++ for the CPU at hand (a second or two, cached in ~/.cache/a3-studio/kernels) and called
through ctypes: it widens each bf16 weight to fp32 in registers (a 16-bit shift) and accumulates
in fp32. It walks the outputs in tiles whose weights stay in cache while every block of 8 rows
passes over them, so a few rows (a decoding step) read the weights once from memory and many rows
(encoding a story, scoring candidates) run at about the fp32 matmul's speed without a widened
copy of the weights (widening the 28M-weight LM head alone took 70 ms a call). Large products
split their outputs across torch's threads (OpenMP). Where the compiler or the build fails,
`kernel()` is None and every call widens the weights and uses the ordinary matmul: slower, never
wrong.

    Bf16Linear.from_linear(nn.Linear)    the same layer with bf16 weights, fp32 in and out
    linear_bf16w(x, weight, bias)        its product, for any bf16 weight (or row slice of one)
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import threading
from pathlib import Path

import torch
from torch import nn

SPLIT_MIN = 1 << 18  # weights x rows (262k) from which a product splits its outputs across torch's threads

_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

static inline float widen(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }

/* rows of y (R, N) = x (R, K) fp32 @ w (N, K) bf16 ^T for outputs [n, n + C): R x C accumulators,
   each weight vector widened once for R rows, each row vector loaded once for C outputs */
template <int R, int C>
static inline void block_bf16w(const float* xp, const uint16_t* wp, float* yp, int64_t K, int64_t N, int64_t n) {
  int64_t k = 0;
  float acc[R][C];
#if defined(__AVX512F__)
  __m512 va[R][C];
  for (int r = 0; r < R; ++r) for (int c = 0; c < C; ++c) va[r][c] = _mm512_setzero_ps();
  for (; k + 16 <= K; k += 16) {
    __m512 wv[C];
    for (int c = 0; c < C; ++c)
      wv[c] = _mm512_castsi512_ps(_mm512_slli_epi32(
          _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(wp + (n + c) * K + k))), 16));
    for (int r = 0; r < R; ++r) {
      __m512 xv = _mm512_loadu_ps(xp + r * K + k);
      for (int c = 0; c < C; ++c) va[r][c] = _mm512_fmadd_ps(xv, wv[c], va[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) for (int c = 0; c < C; ++c) acc[r][c] = _mm512_reduce_add_ps(va[r][c]);
#else
  for (int r = 0; r < R; ++r) for (int c = 0; c < C; ++c) acc[r][c] = 0.f;
#endif
  for (; k < K; ++k)
    for (int c = 0; c < C; ++c) {
      float wf = widen(wp[(n + c) * K + k]);
      for (int r = 0; r < R; ++r) acc[r][c] += xp[r * K + k] * wf;
    }
  for (int r = 0; r < R; ++r) for (int c = 0; c < C; ++c) yp[r * N + n + c] = acc[r][c];
}

/* outputs [n0, n1) of R rows (R fixed at compile time). Up to 4 rows (a decoding step, bound by
   reading the weights) take one output at a time: one sequential stream of weights, which the
   hardware prefetcher follows (four interleaved rows of weights read the LM head at half the
   speed). More rows are bound by the arithmetic: C = 16 / R outputs share each row's loads. */
template <int R>
static void rows_bf16w(const float* xp, const uint16_t* wp, float* yp, int64_t K, int64_t N, int64_t n0, int64_t n1) {
  constexpr int C = R <= 4 ? 1 : 16 / R;
  int64_t n = n0;
  for (; n + C <= n1; n += C) block_bf16w<R, C>(xp, wp, yp, K, N, n);
  for (; n < n1; ++n) block_bf16w<R, 1>(xp, wp, yp, K, N, n);
}

typedef void (*rows_fn)(const float*, const uint16_t*, float*, int64_t, int64_t, int64_t, int64_t);
static const rows_fn ROWS[8] = {rows_bf16w<1>, rows_bf16w<2>, rows_bf16w<3>, rows_bf16w<4>,
                                rows_bf16w<5>, rows_bf16w<6>, rows_bf16w<7>, rows_bf16w<8>};

/* y (R, N) = x (R, K) @ w (N, K)^T, x and y fp32, w bf16 (raw 16-bit), on `threads` threads. Each
   thread takes a share of the outputs, in tiles of NT outputs: a tile's weights (NT x K x 2 bytes)
   come from memory once and stay in cache while every block of 8 rows passes over them (at most
   16 accumulators, within the 32 vector registers), so R rows cost one read of the weights. */
#define NT 32
extern "C" void mm_bf16w(const float* x, const uint16_t* w, float* y, int64_t R, int64_t K, int64_t N, int threads) {
  int64_t chunk = (N + threads - 1) / threads;
  #pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    int64_t n0 = t * chunk, n1 = n0 + chunk < N ? n0 + chunk : N;
    for (int64_t a = n0; a < n1; a += NT) {
      int64_t b = a + NT < n1 ? a + NT : n1;
      for (int64_t r0 = 0; r0 < R; r0 += 8) {
        int64_t rb = R - r0 < 8 ? R - r0 : 8;
        ROWS[rb - 1](x + r0 * K, w, y + r0 * N, K, N, a, b);
      }
    }
  }
}
"""

_KERNEL = None
_TRIED = False
_LOCK = threading.Lock()


def build_library(source: str, stem: str) -> ctypes.CDLL:
    """Compile a C++ source for this CPU into ~/.cache/a3-studio/kernels/<stem>-<hash>.so (once per
    source and CPU; A3_KERNEL_DIR moves it) and load it. Raises OSError or SubprocessError where it
    cannot (no compiler, an odd CPU): callers then keep their PyTorch path."""
    # -ffp-contract=off: the scalar tail (widths not a multiple of 16) rounds each product and sum the
    # same way whatever the row and output blocking, so an output never depends on its neighbours
    flags = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC", "-x", "c++"]
    tag = hashlib.sha256((source + " ".join(flags) + platform.processor()).encode()).hexdigest()[:16]
    out = Path(os.environ.get("A3_KERNEL_DIR", Path.home() / ".cache" / "a3-studio" / "kernels")) / f"{stem}-{tag}.so"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        src = out.with_suffix(f".{os.getpid()}.cpp")
        src.write_text(source)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([os.environ.get("CXX", "g++"), *flags, str(src), "-o", str(tmp)], check=True,
                       capture_output=True, timeout=120)
        tmp.replace(out)
        src.replace(out.with_suffix(".cpp"))
    return ctypes.CDLL(str(out))


def kernels_enabled() -> bool:
    """Whether native kernels may be built here: A3_BF16_KERNEL is not 0 and the CPU is one the
    sources target (x86-64 or aarch64)."""
    return os.environ.get("A3_BF16_KERNEL", "1") != "0" and platform.machine() in ("x86_64", "AMD64", "aarch64")


def _build() -> ctypes.CDLL:
    lib = build_library(_SOURCE, "bf16w")
    lib.mm_bf16w.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                             ctypes.c_int64, ctypes.c_int]
    lib.mm_bf16w.restype = None
    return lib


def kernel():
    """The compiled mm_bf16w (a ctypes function), or None where it cannot be built
    (A3_BF16_KERNEL=0 turns it off)."""
    global _KERNEL, _TRIED
    with _LOCK:
        if not _TRIED:
            _TRIED = True
            if kernels_enabled():
                try:
                    _KERNEL = _build().mm_bf16w
                except (OSError, subprocess.SubprocessError):  # no compiler, an odd CPU: the mm path serves
                    _KERNEL = None
        return _KERNEL


def mm_bf16w(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(..., N) = x (..., K) fp32 @ w (N, K) bf16 ^T in fp32, through the kernel (callers check
    kernel()): the rows are x's leading dimensions, read in place (no reshape: a decoding step
    makes ~120 of these calls, and each PyTorch operation costs its dispatch)."""
    if not x.is_contiguous():  # a check, not an operation
        x = x.contiguous()
    K, N = w.shape[1], w.shape[0]
    R = x.numel() // K
    y = torch.empty(*x.shape[:-1], N, dtype=torch.float32)
    # every projection of a 135M model splits (2 threads: 37 vs 33 tokens/s at 4M); a tiny model's stay whole
    threads = torch.get_num_threads() if w.numel() * R >= SPLIT_MIN else 1
    _KERNEL(x.data_ptr(), w.data_ptr(), y.data_ptr(), R, K, N, threads)
    return y


def linear_bf16w(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., in) fp32 @ weight (out, in) bf16 ^T (+ bias) in fp32: the kernel on a CPU where it
    built, else the widened weights through the ordinary matmul. `weight` may be a row slice of a
    larger contiguous weight (fused.py)."""
    if x.dtype != torch.float32:
        x = x.float()
    if x.device.type == "cpu" and kernel() is not None and weight.is_contiguous():
        y = mm_bf16w(x, weight)
    else:
        y = (x.reshape(-1, weight.shape[1]) @ weight.float().T).reshape(*x.shape[:-1], weight.shape[0])
    return y if bias is None else y + bias


class Bf16Linear(nn.Module):
    """y = x W^T (+ b) with W stored in bfloat16 and everything else in fp32 (x, y, b, the sums)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", weight.detach().to(torch.bfloat16).contiguous())  # (out, in)
        self.register_buffer("bias", None if bias is None else bias.detach().float())
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    @classmethod
    def from_linear(cls, lin: nn.Linear) -> "Bf16Linear":
        return cls(lin.weight, lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_bf16w(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weight=bf16, math=fp32"
