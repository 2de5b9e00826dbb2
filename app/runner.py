"""From what a user typed to a finished run record: checked settings, one compute call.

    settings_from_inputs(...)  raw widget values -> a settings dict, or ValueError with a message
    build_request(...)         settings + tokenizer -> (segments, infill.Encoded, DecodeConfig)
    compute(...)               the whole decode plus a left-to-right score, in ONE call

`compute` is the only function that touches the model. It is wrapped with `spaces.GPU` when the
`spaces` package is importable (ZeroGPU), so a run holds the GPU for one short call; the UI then
animates the recorded steps on the CPU (the replay pattern). Without `spaces` it runs unchanged;
a lock keeps two CPU runs from fighting over the same cores, and a small model decodes on one
thread (models.cpu_threads). Decoding itself is the core's
generator (model.decode); nothing here masks or samples.
"""
from __future__ import annotations

import math
import threading
import time

import torch

from model.core.decode import DYNAMIC_ORDERS, STRATEGIES, DecodeConfig, decode
from model.core.groups import group_ids_from_order
from model.core.infill import (Blank, custom_groups, encode_segments, parse_custom_order, parse_template)
from model.core.sampling import SamplingConfig

from . import models

try:  # ZeroGPU: hold a GPU for the compute call only
    import spaces
except ImportError:
    spaces = None

MAX_SEED = 2 ** 63 - 1
# the ranges of the sampling and grouping widgets; values from the API or a run file are held to them too
LIMITS = {"group_size": (1, 64), "threshold": (0.0, 1.0), "temperature": (0.0, 2.0), "top_k": (0, 200),
          "top_p": (0.05, 1.0)}
MAX_CHARS = 100_000  # longer text cannot fit any model's context here; refuse before tokenizing it
_LOCK = threading.Lock()


def _int(value, name: str, lo: int, hi: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number; got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise ValueError(f"{name} must be a whole number; got {value!r}")
    if not lo <= int(f) <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}; got {int(f)}")
    return int(f)


def _float(value, name: str, lo: float, hi: float) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(f) or not lo <= f <= hi:
        raise ValueError(f"{name} must be between {lo:g} and {hi:g}; got {value!r}")
    return f


def parse_seed(text) -> int:
    """The seed box: empty means 0; otherwise a whole number in [0, 2**63)."""
    s = str(text if text is not None else "").strip()
    if not s:
        return 0
    if not s.isdigit() or not s.isascii():
        raise ValueError(f"the seed must be a whole number such as 0 or 1234; got {s[:40]!r}")
    if int(s) > MAX_SEED:
        raise ValueError("the seed is too large; use a number below 2**63")
    return int(s)


def settings_from_inputs(template, strategy, group_size, threshold, custom_order, temperature,
                         top_k, top_p, seed) -> dict:
    """Raw widget values -> a checked settings dict (see record.SETTINGS_DEFAULTS)."""
    if len(str(template or "")) > MAX_CHARS:
        raise ValueError(f"the text is {len(str(template))} characters long; keep it under {MAX_CHARS}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {str(strategy)[:40]!r}; pick one from the list")
    dynamic = strategy in DYNAMIC_ORDERS
    thr = _float(threshold if threshold not in (None, "") else 0, "the probability threshold", *LIMITS["threshold"])
    return {
        "template": str(template or ""),
        "strategy": strategy,
        "group_size": _int(group_size, "group size / k", *LIMITS["group_size"]),
        "threshold": thr if dynamic and thr > 0 else None,  # 0 = off; fixed orders have none
        "custom_order": str(custom_order or "")[:2000] if strategy == "custom" else "",
        "temperature": _float(temperature, "temperature", *LIMITS["temperature"]),
        "top_k": _int(top_k, "top-k", *LIMITS["top_k"]),
        "top_p": _float(top_p, "top-p", *LIMITS["top_p"]),
        "seed": parse_seed(seed),
        "context": "block",
    }


def decode_config(settings: dict, blank_spans: list[list[int]]) -> DecodeConfig:
    """Settings -> the core's DecodeConfig (temperature 0 = greedy)."""
    if settings["top_p"] <= 0:
        raise ValueError("top-p must be above 0 (1 turns it off)")
    groups = None
    if settings["strategy"] == "custom":
        stages = parse_custom_order(settings["custom_order"], len(blank_spans))
        groups = custom_groups(blank_spans, stages, settings["group_size"])
    t = settings["temperature"]
    sampling = SamplingConfig(do_sample=t > 0, temperature=t if t > 0 else 1.0, top_k=settings["top_k"],
                              top_p=settings["top_p"], seed=settings["seed"])
    cfg = DecodeConfig(strategy=settings["strategy"], group_size=settings["group_size"],
                       threshold=settings["threshold"], custom_groups=groups, context=settings["context"],
                       sampling=sampling)
    sampling.validate()
    return cfg


def build_request(settings: dict, tokenizer, max_positions: int, originals: list | None = None):
    """(segments, Encoded, DecodeConfig) for a settings dict; ValueError says what to change."""
    segments = parse_template(settings["template"])
    if originals:  # blanks made by selection or a helper remember the text they replaced
        it = iter(originals)
        segments = [Blank(s.length, next(it, None)) if isinstance(s, Blank) else s for s in segments]
    enc = encode_segments(tokenizer, segments, tokenizer.bos_token_id, max_positions)
    return segments, enc, decode_config(settings, enc.blank_spans)


def _duration(key, input_ids, blank_mask, cfg) -> int:
    """Seconds of GPU to ask ZeroGPU for: generous for the blanks at hand, short for priority."""
    return int(min(120, 15 + 0.05 * sum(map(bool, blank_mask))))


def _compute(key: str, input_ids: list[int], blank_mask: list[bool], cfg: DecodeConfig):
    """Decode to the end; return (steps, left-to-right log p of the filled blanks, seconds)."""
    model, tok = models.load(key)
    threads = models.cpu_threads(model)
    with _LOCK:
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            t0 = time.perf_counter()
            steps = list(decode(model, input_ids, blank_mask, cfg, tok))
            out = list(input_ids)
            for s in steps:
                for p, t in zip(s.positions, s.token_ids):
                    out[p] = t
            ar = ar_log_likelihood(model, out, blank_mask)
            return steps, ar, time.perf_counter() - t0
        finally:
            torch.set_num_threads(before)


def ar_log_likelihood(model, ids: list[int], blank_mask: list[bool]) -> float:
    """log p(blanks | visible text) with the blanks scored one at a time, left to right (exact)."""
    visible = [i for i, b in enumerate(blank_mask) if not b]
    blanks = [[i] for i, b in enumerate(blank_mask) if b]
    g = group_ids_from_order(len(ids), visible, blanks, "block")
    dev = model.device
    lp = model.token_logprobs(torch.tensor([ids], device=dev), g[None].to(dev))[0]
    return float(lp[torch.tensor(blank_mask, device=dev)].sum())


compute = spaces.GPU(duration=_duration)(_compute) if spaces is not None else _compute
