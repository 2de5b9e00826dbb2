"""Checking a request: from the widgets' raw values to a decoding the core can run.

    RunRequest.check(...)      raw widget values (or a run file's settings) -> a RunRequest, every value
                               checked, or ValueError saying what to change
    RunRequest.decode_config   the request -> the core's DecodeConfig (the only place one is made from it)
    prepare(request, model, story)
                               the request on a menu model and the user's story: a PreparedRun (the
                               model's entry, the segments, the encoded story, the DecodeConfig)
    int_in, float_in, text_in, parse_seed
                               one raw value -> a checked value, or ValueError naming it
    Slider, Number, Dropdown, Radio, StoryEditor
                               the input widgets: they hand the value a client sent to these checks

A RunRequest is built once, where the values come in (run_events, compare_tab, run_schema for a
file), and travels down as it is: candidate_plan reads it, compute decodes its DecodeConfig,
run_file records it (`settings`), and a file read back is rebuilt by the same RunRequest.check.

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
from abc import ABCMeta
from dataclasses import asdict, dataclass, field, fields

import gradio as gr
from gradio.components.highlighted_text import HighlightedTextData

from model.core.candidates import POOLS
from model.core.decode import DYNAMIC_ORDERS, STRATEGIES, DecodeConfig
from model.core.infill import Encoded, clean_text, custom_groups, encode_segments, parse_custom_order
from model.core.sampling import SamplingConfig

from . import model_menu, story
from .story import MAX_CHARS

MAX_SEED = 2 ** 63 - 1
# the ranges of the sampling, grouping and story widgets; values from the API or a run file are held to them too
LIMITS = {"candidates": (1, 8), "group_size": (1, 64), "threshold": (0.0, 1.0), "temperature": (0.0, 2.0), "top_k": (0, 200),
          "top_p": (0.05, 1.0), "fraction": (0.05, 0.5), "new_length": (0, 1024)}
MAX_CUSTOM_CHARS = 2000


def _shown(value) -> str:
    """A value as a message quotes it: repr (so control characters and surrogates are escaped), short."""
    r = repr(value)
    return r if len(r) <= 40 else r[:40] + "…"


def _number(value, name: str, what: str) -> float:
    """A raw value (a number or its text) as a float, or ValueError: '<name> must be <what>'."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be {what}; got {_shown(value)}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be {what}; got {_shown(value)}") from None


def int_in(value, name: str, lo: int, hi: int) -> int:
    """A whole number in [lo, hi] from a raw value (a number or its text), or ValueError naming it."""
    f = _number(value, name, "a whole number")
    if not math.isfinite(f) or f != int(f):
        raise ValueError(f"{name} must be a whole number; got {_shown(value)}")
    if not lo <= int(f) <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}; got {int(f)}")
    return int(f)


def float_in(value, name: str, lo: float, hi: float) -> float:
    """A finite number in [lo, hi] from a raw value (a number or its text), or ValueError naming it."""
    f = _number(value, name, "a number")
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


CONTEXTS = ("block", "causal")  # how the visible text is grouped (DecodeConfig.context); the app runs "block"


@dataclass(frozen=True)
class RunRequest:
    """One run as a user asked for it, every value checked (RunRequest.check): what a run file
    records as its `settings`. The names are the run file's; the API calls template `text` and
    strategy `order`."""
    template: str = ""  # the story, [[N]] blanks; stored cleaned (no control characters, no surrogates)
    strategy: str = "left_to_right"  # one of decode.STRATEGIES
    group_size: int = 1  # fixed orders: tokens per group; dynamic: k per step
    threshold: float | None = None  # dynamic orders only; None = off (use k)
    custom_order: str = ""  # strategy "custom": a group number per blank
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int = 0
    candidates: int = 1  # 1 = your settings only, animated; more are ranked (candidate_plan.py)
    pool: str = "orders"  # where the other candidates come from (core/candidates.POOLS)
    context: str = "block"  # one of CONTEXTS

    @classmethod
    def check(cls, template, strategy, group_size, threshold, custom_order, temperature, top_k, top_p, seed,
              candidates=1, pool="orders", context="block") -> RunRequest:
        """Raw values (as a widget, an API client or a run file sends them) -> a RunRequest, or
        ValueError naming the value and what to change."""
        template = text_in(template, "the text")
        if not isinstance(strategy, str) or strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {_shown(strategy)}; pick one from the list: {', '.join(STRATEGIES)}")
        thr = float_in(threshold if threshold not in (None, "") else 0, "the probability threshold",
                       *LIMITS["threshold"])
        custom = text_in(custom_order, "the custom order", MAX_CUSTOM_CHARS)
        values = dict(template=template, strategy=strategy,
                      threshold=thr if strategy in DYNAMIC_ORDERS and thr > 0 else None,  # 0 = off; fixed orders have none
                      custom_order=custom if strategy == "custom" else "",
                      group_size=int_in(group_size, "group size / k", *LIMITS["group_size"]),
                      temperature=float_in(temperature, "temperature", *LIMITS["temperature"]),
                      top_k=int_in(top_k, "top-k", *LIMITS["top_k"]),
                      top_p=float_in(top_p, "top-p", *LIMITS["top_p"]),
                      seed=parse_seed(seed),
                      candidates=int_in(candidates if candidates not in (None, "") else 1, "the number of candidates",
                                        *LIMITS["candidates"]))
        if pool in (None, ""):
            pool = "orders"
        if not isinstance(pool, str) or pool not in POOLS:
            raise ValueError(f"unknown candidate pool {_shown(pool)}; pick one of {', '.join(POOLS)}")
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {', '.join(CONTEXTS)}; got {_shown(context)}")
        return cls(**values, pool=pool, context=context)

    @classmethod
    def from_settings(cls, settings: dict) -> RunRequest:
        """A run file's `settings` (missing fields take their defaults, unknown ones are ignored)
        through the same checks."""
        known = {f.name for f in fields(cls)}
        return cls.check(**{**asdict(cls()), **{k: v for k, v in settings.items() if k in known}})

    @property
    def settings(self) -> dict:
        """The request as a run file records it."""
        return asdict(self)

    def decode_config(self, blank_spans: list[list[int]]) -> DecodeConfig:
        """The core's DecodeConfig for this request on a story with these blank spans (the custom
        order's groups need them); temperature 0 is greedy."""
        groups = None
        if self.strategy == "custom":
            groups = custom_groups(blank_spans, parse_custom_order(self.custom_order, len(blank_spans)),
                                   self.group_size)
        t = self.temperature
        sampling = SamplingConfig(do_sample=t > 0, temperature=t if t > 0 else 1.0, top_k=self.top_k,
                                  top_p=self.top_p, seed=self.seed)
        sampling.validate()
        return DecodeConfig(strategy=self.strategy, group_size=self.group_size, threshold=self.threshold,
                            custom_groups=groups, context=self.context, sampling=sampling)


@dataclass
class PreparedRun:
    """A checked request on a model, ready to compute: what compute.py and candidate_plan.py take."""
    request: RunRequest
    model: dict  # {label, key, trained}: the menu entry as a record names it (never a path)
    segments: list  # the story's segments, blanks remembering the text they replaced
    enc: Encoded
    cfg: DecodeConfig
    tokenizer: object
    max_positions: int
    # the model's learned length signal (core/chosen_length.length_signal): {} when it has none
    signal: dict = field(default_factory=dict)


def prepare(request: RunRequest, model_key, story_state=None, plan: bool = True) -> PreparedRun:
    """The request on a menu model (resolved through model_menu.menu_entry, never used as a path)
    and the user's story state (story.segments: the blanks' originals), encoded; ValueError says
    what to change. plan=False refuses blanks whose length the model chooses (a view that runs one fill)."""
    entry = model_menu.menu_entry(model_key)
    tok, ctx = model_menu.tokenizer(entry.key)
    segments = story.segments_of(request.template, story_state if isinstance(story_state, dict) else {})
    enc = encode_segments(tok, segments, tok.bos_token_id, ctx)
    if not plan and enc.chosen is not None:
        raise ValueError("this view needs every blank's length: give the [[?]] / [[a-b]] blank a number of tokens")
    info = {"label": entry.label, "key": entry.key, "trained": entry.trained}
    return PreparedRun(request, info, segments, enc, request.decode_config(enc.blank_spans), tok, ctx,
                       model_menu.length_signal(entry.key))


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
                    "RunRequest.check, each refused with its own message.")
Radio = _as_sent(gr.Radio, "Radio", "gr.Radio; the candidate pool goes to RunRequest.check, refused with its "
                 "own message.")
StoryEditor = _as_sent(gr.HighlightedText, "StoryEditor", "gr.HighlightedText; story.editor_pieces checks its pieces "
                       "(Gradio would validate them against its data model first, with no message).",
                       data_model=None, api_info=lambda self: HighlightedTextData.model_json_schema())
