"""Checking a request: from the widgets' raw values to a decoding the core can run.

    settings_from_inputs(...)  raw widget values -> a settings dict, or ValueError with a message
    build_request(...)         settings + tokenizer -> (segments, infill.Encoded, DecodeConfig)
    prepare_run(...)           both, for a menu model and the user's story state
    int_in, float_in           one raw value -> a number in a range, or ValueError naming it
    Slider, Number, Dropdown, StoryEditor
                               the input widgets: they hand the value a client sent to these checks

Every value the API can send is held to the widgets' ranges (LIMITS) here, at the boundary.
Gradio's own components check some values before a handler runs, and what they cannot parse
("hot" for a slider, null, a malformed editor piece) ends as a generic "Error" that says nothing
about what to change. A browser never sends such values; an API client can. The widget classes
at the end draw exactly as Gradio's (`is_template`: the same front end) but pass the value as
sent, so the checks here refuse it by name. Nothing here touches a model's weights; computing
is compute.py's job.
"""
from __future__ import annotations

import math
from dataclasses import replace
from abc import ABCMeta

import gradio as gr
from gradio.components.highlighted_text import HighlightedTextData

from model.core.candidates import POOLS
from model.core.decode import DYNAMIC_ORDERS, STRATEGIES, DecodeConfig
from model.core.infill import (Blank, clean_text, custom_groups, encode_segments, parse_custom_order,
                               parse_template)
from model.core.sampling import SamplingConfig

from . import model_menu

MAX_SEED = 2 ** 63 - 1
# the ranges of the sampling, grouping and story widgets; values from the API or a run file are held to them too
LIMITS = {"candidates": (1, 8), "group_size": (1, 64), "threshold": (0.0, 1.0), "temperature": (0.0, 2.0), "top_k": (0, 200),
          "top_p": (0.05, 1.0), "fraction": (0.05, 0.5), "new_length": (0, 1024)}
MAX_CHARS = 100_000  # longer text cannot fit any model's context here; refuse before tokenizing it
MAX_CUSTOM_CHARS = 2000


def _shown(value) -> str:
    """A value as a message quotes it: repr (so control characters and surrogates are escaped), short."""
    r = repr(value)
    return r if len(r) <= 40 else r[:40] + "…"


def int_in(value, name: str, lo: int, hi: int) -> int:
    """A whole number in [lo, hi] from a raw value (a number or its text), or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be a whole number; got {_shown(value)}")
    try:
        f = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number; got {_shown(value)}") from None
    if not math.isfinite(f) or f != int(f):
        raise ValueError(f"{name} must be a whole number; got {_shown(value)}")
    if not lo <= int(f) <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}; got {int(f)}")
    return int(f)


def float_in(value, name: str, lo: float, hi: float) -> float:
    """A finite number in [lo, hi] from a raw value (a number or its text), or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be a number; got {_shown(value)}")
    try:
        f = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number; got {_shown(value)}") from None
    if not math.isfinite(f) or not lo <= f <= hi:
        raise ValueError(f"{name} must be between {lo:g} and {hi:g}; got {_shown(value)}")
    return f


def text_in(value, name: str, max_chars: int = MAX_CHARS) -> str:
    """A text box's value, cleaned (control characters and lone surrogates removed): a page, a
    run file and a message can then always carry it. None is empty; other types are refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text; got {type(value).__name__}")
    if len(value) > max_chars:
        raise ValueError(f"{name} is {len(value)} characters long; keep it under {max_chars}")
    return clean_text(value)[0]


def parse_seed(text) -> int:
    """The seed box: empty means 0; otherwise a whole number in [0, 2**63)."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    s = text_in(text, "the seed", 100).strip()
    if not s:
        return 0
    if not s.isdigit() or not s.isascii():
        raise ValueError(f"the seed must be a whole number such as 0 or 1234; got {_shown(s)}")
    if int(s) > MAX_SEED:
        raise ValueError("the seed is too large; use a number below 2**63")
    return int(s)


def settings_from_inputs(template, strategy, group_size, threshold, custom_order, temperature,
                         top_k, top_p, seed, candidates=1, pool="orders") -> dict:
    """Raw widget values -> a checked settings dict (see run_file.SETTINGS_DEFAULTS). Text is
    stored cleaned, so a record never holds what a file or a page cannot."""
    template = text_in(template, "the text")
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {_shown(strategy)}; pick one from the list: {', '.join(STRATEGIES)}")
    dynamic = strategy in DYNAMIC_ORDERS
    thr = float_in(threshold if threshold not in (None, "") else 0, "the probability threshold", *LIMITS["threshold"])
    custom = text_in(custom_order, "the custom order", MAX_CUSTOM_CHARS)
    return {
        "template": template,
        "strategy": strategy,
        "group_size": int_in(group_size, "group size / k", *LIMITS["group_size"]),
        "threshold": thr if dynamic and thr > 0 else None,  # 0 = off; fixed orders have none
        "custom_order": custom if strategy == "custom" else "",
        "temperature": float_in(temperature, "temperature", *LIMITS["temperature"]),
        "top_k": int_in(top_k, "top-k", *LIMITS["top_k"]),
        "top_p": float_in(top_p, "top-p", *LIMITS["top_p"]),
        "seed": parse_seed(seed),
        "context": "block",
        "candidates": int_in(candidates if candidates not in (None, "") else 1, "the number of candidates",
                             *LIMITS["candidates"]),
        "pool": _pool(pool),
    }


def _pool(pool) -> str:
    if pool in (None, ""):
        return "orders"
    if not isinstance(pool, str) or pool not in POOLS:
        raise ValueError(f"unknown candidate pool {_shown(pool)}; pick one of {', '.join(POOLS)}")
    return pool


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
        segments = [replace(s, original=next(it, None)) if isinstance(s, Blank) else s for s in segments]
    enc = encode_segments(tokenizer, segments, tokenizer.bos_token_id, max_positions)
    return segments, enc, decode_config(settings, enc.blank_spans)


def prepare_run(template, model_key, strategy, group_size, threshold, custom_order, temperature, top_k,
                top_p, seed, state, candidates=1, pool="orders", plan=True):
    """Check everything a run needs: (settings, encoded, cfg, entry dict, segments) or ValueError.
    The model key is resolved through the menu (model_menu.menu_entry), never used as a path.
    plan=False refuses blanks whose length the model chooses (a view that runs one fill)."""
    entry = model_menu.menu_entry(model_key)
    settings = settings_from_inputs(template, strategy, group_size, threshold, custom_order,
                                    temperature, top_k, top_p, seed, candidates, pool)
    tok, ctx = model_menu.tokenizer(entry.key)
    state = state if isinstance(state, dict) else {}
    originals = state.get("originals") if state.get("template") == settings["template"] else None
    segments, enc, cfg = build_request(settings, tok, ctx, originals)
    info = {"label": entry.label, "key": entry.key, "trained": entry.trained}
    if not plan and enc.chosen is not None:
        raise ValueError("this view needs every blank's length: give the [[?]] / [[a-b]] blank a number of tokens")
    return settings, enc, cfg, info, segments


# ----------------------------------------------------------------------------------------------
# the input widgets: Gradio's own, passing the value as sent to the checks above


def _as_sent(base: type, name: str, doc: str, **attrs) -> type:
    """A subclass of a Gradio component, drawn by `base`'s own front end (is_template), whose
    value reaches the handler as the client sent it. Built with ABCMeta.__new__ rather than a
    class statement: Gradio's ComponentMeta writes a .pyi stub next to the module of every
    component class it sees; these add no events, so they need nothing else from it."""
    body = {"__module__": __name__, "__qualname__": name, "__doc__": doc, "is_template": True,
            "preprocess": lambda self, payload: payload, **attrs}
    return ABCMeta.__new__(type(base), name, (base,), body)


Slider = _as_sent(gr.Slider, "Slider", "gr.Slider; int_in / float_in check its value.")
Number = _as_sent(gr.Number, "Number", "gr.Number; int_in checks its value.")
Dropdown = _as_sent(gr.Dropdown, "Dropdown", "gr.Dropdown; a model key goes to model_menu.menu_entry, an order to "
                    "settings_from_inputs, each refused with its own message.")
Radio = _as_sent(gr.Radio, "Radio", "gr.Radio; the candidate pool goes to settings_from_inputs, refused with its "
                 "own message.")
StoryEditor = _as_sent(gr.HighlightedText, "StoryEditor", "gr.HighlightedText; story.editor_pieces checks its pieces "
                       "(Gradio would validate them against its data model first, with no message).",
                       data_model=None, api_info=lambda self: HighlightedTextData.model_json_schema())
