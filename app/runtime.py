"""How this machine runs a menu model: its CPU precision, its threads, and the words the model
note uses for them. model_menu.py loads a model and hands it here once; compute.py asks for the
threads once a batch (through model_menu, which re-exports these names).

    use_cpu_precision(model)   the model in $A3_CPU_PRECISION's precision on a CPU (as loaded on a GPU)
    cpu_precision(n_params)    which precision: the variable, else bf16w for a large model, fp32 for a small
    cpu_threads(model)         intra-op threads: 1 for a small model, every core for a large one
    context_mb()               MiB of encoded stories each loaded model keeps ($A3_CONTEXT_MB)
    runs_on(model)             'cpu, bf16 weights, fp32 math, 2 threads' for the model note

A group-size-1 decoding step of a large model (the SmolLM2 adapters, 135M parameters) reads every
weight once, so its time is weight bytes over memory bandwidth: bf16 weights with fp32 math
(model/backbones/precision.py, bf16w) halve the bytes and keep the activations in fp32, and more
cores read faster. A tiny model's step is a few microseconds of work: it stays in fp32 on one
thread (more threads spend longer handing off than computing). Scoring uses the same loaded model.
A GPU keeps the dtype model_menu loads it in ($A3_DTYPE); ZeroGPU is a GPU.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

SMALL_MODEL = 50e6  # parameters; below this one CPU thread decodes fastest (measured: 2 threads ~2-30x slower)
PRECISION_WORDS = {"fp32": "fp32", "bf16w": "bf16 weights, fp32 math", "bf16": "bf16 weights and math",
                   "int8": "int8 weights and activations (bf16 weights for down_proj and the head)"}


def zero_gpu() -> bool:
    """True on a ZeroGPU Space (the `spaces` package's own switch)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def cpu_precision(n_params: float) -> str:
    """The precision a CPU decodes a model of n_params in: $A3_CPU_PRECISION, else bf16w above
    SMALL_MODEL (fewer weight bytes per step) and fp32 below (a tiny model is not weight-bound).
    ValueError naming the choices for any other value (model_menu.preload checks it at start)."""
    from model.backbones.precision import PRECISIONS

    asked = os.environ.get("A3_CPU_PRECISION", "").strip()
    if asked and asked not in PRECISIONS:
        raise ValueError(f"A3_CPU_PRECISION={asked!r} is not a precision; choose one of {', '.join(PRECISIONS)}")
    return asked or ("bf16w" if n_params >= SMALL_MODEL else "fp32")


CONTEXT_MB = 64  # default size of a loaded model's store of encoded stories (core/context_store.py)


def context_mb() -> float:
    """MiB of encoded stories a loaded model keeps ($A3_CONTEXT_MB, default CONTEXT_MB; 0 keeps none).
    ValueError for anything but a number >= 0."""
    asked = os.environ.get("A3_CONTEXT_MB", "").strip()
    try:
        mb = float(asked) if asked else CONTEXT_MB
    except ValueError:
        mb = -1
    if not mb >= 0:
        raise ValueError(f"A3_CONTEXT_MB={asked!r} must be a number of MiB, 0 or more (0 keeps no encoded story)")
    return mb


def parameter_count(model) -> int:
    """A menu model's parameters as loaded (a CPU precision keeps packed weights in buffers)."""
    return getattr(model, "param_count", None) or sum(p.numel() for p in model.parameters())


def use_cpu_precision(model):
    """A freshly loaded fp32 model, in place: its parameters counted, and on a CPU (not ZeroGPU,
    whose models move to a GPU) put in cpu_precision's precision. Returns it."""
    model.param_count = sum(p.numel() for p in model.parameters())  # before a precision packs them
    if model.device.type == "cpu" and not zero_gpu():
        precision = cpu_precision(model.param_count)
        if precision != "fp32":
            from model.backbones.precision import apply_precision

            apply_precision(model, precision)
    return model


def machine_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU quota
    (cgroup v2 cpu.max), which os.cpu_count() and torch's default both ignore."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


def cpu_threads(model) -> int | None:
    """Intra-op threads for decoding with this model on the CPU: $A3_TORCH_THREADS if set, 1 for a
    small model (its ops take microseconds, thread hand-offs dominate), every core for a large one
    (its steps read every weight: more cores, more bandwidth); None on a GPU."""
    if os.environ.get("A3_TORCH_THREADS", "").isdigit():
        return max(1, int(os.environ["A3_TORCH_THREADS"]))
    if model.device.type != "cpu":
        return None
    return 1 if parameter_count(model) < SMALL_MODEL else machine_cores()


def runs_on(model) -> str:
    """How this machine runs a loaded model, in words: 'cpu, bf16 weights, fp32 math, 2 threads'."""
    from model.backbones.bf16_linear import kernel
    from model.backbones.precision import precision_of

    if zero_gpu():
        return "a ZeroGPU slice (cuda)"
    precision = precision_of(model)
    words = PRECISION_WORDS[precision] + (" (no compiled kernel here: slower)"
                                          if precision in ("bf16w", "int8") and kernel() is None else "")
    if model.device.type != "cpu":
        return f"{model.device.type}, {words}"
    threads = cpu_threads(model) or torch.get_num_threads()
    return f"cpu, {words}, {threads} thread{'s' if threads != 1 else ''}"
