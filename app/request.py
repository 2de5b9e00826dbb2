"""Checking a request: from the widgets' raw values to a decoding the core can run.

    settings_from_inputs(...)  raw widget values -> a settings dict, or ValueError with a message
    build_request(...)         settings + tokenizer -> (segments, infill.Encoded, DecodeConfig)
    prepare_run(...)           both, for a menu model and the user's story state

Every value the API can send is held to the widgets' ranges (LIMITS) here, at the boundary.
Nothing here touches a model's weights; computing is compute.py's job.
"""
from __future__ import annotations

import math

from model.core.decode import DYNAMIC_ORDERS, STRATEGIES, DecodeConfig
from model.core.infill import (Blank, clean_text, custom_groups, encode_segments, parse_custom_order,
                               parse_template)
from model.core.sampling import SamplingConfig

from . import model_menu

MAX_SEED = 2 ** 63 - 1
# the ranges of the sampling and grouping widgets; values from the API or a run file are held to them too
LIMITS = {"group_size": (1, 64), "threshold": (0.0, 1.0), "temperature": (0.0, 2.0), "top_k": (0, 200),
          "top_p": (0.05, 1.0)}
MAX_CHARS = 100_000  # longer text cannot fit any model's context here; refuse before tokenizing it


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
    """Raw widget values -> a checked settings dict (see run_file.SETTINGS_DEFAULTS)."""
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


def prepare_run(template, model_key, strategy, group_size, threshold, custom_order, temperature, top_k,
                top_p, seed, state):
    """Check everything a run needs: (settings, encoded, cfg, entry dict) or ValueError."""
    entry = model_menu.menu_entry(model_key)
    settings = settings_from_inputs(template, strategy, group_size, threshold, custom_order,
                                    temperature, top_k, top_p, seed)
    tok, ctx = model_menu.tokenizer(entry.key)
    clean = clean_text(settings["template"])[0]
    originals = (state or {}).get("originals") if (state or {}).get("template") == clean else None
    _, enc, cfg = build_request(settings, tok, ctx, originals)
    return settings, enc, cfg, {"label": entry.label, "path": entry.key, "trained": entry.trained}
