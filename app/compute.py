"""The one call that touches a model: decode a checked request to the end and score it.

    compute(key, input_ids, blank_mask, cfg, spans)  -> (Trace, left-to-right log p, seconds)
    execute(settings, enc, cfg, entry)               -> a run record (run_file.py), fills included

`compute` is wrapped with `spaces.GPU` when the `spaces` package is importable (ZeroGPU), so a
run holds the GPU for one short call; the UI then animates the recorded steps on the CPU (the
replay pattern). Without `spaces` it runs unchanged; a lock keeps two CPU runs from fighting over
the same cores, and a small model decodes on one thread (model_menu.cpu_threads). Decoding is
the core's generator (model.core.decode) and the score the core's score_blanks: nothing here
masks, samples or scores by itself.
"""
from __future__ import annotations

import threading
import time

import torch

from model.core.decode import DecodeConfig, run
from model.core.scoring import score_blanks

from . import model_menu, run_file

try:  # ZeroGPU: hold a GPU for the compute call only
    import spaces
except ImportError:
    spaces = None

_LOCK = threading.Lock()


def _duration(key, input_ids, blank_mask, cfg, spans=None) -> int:
    """Seconds of GPU to ask ZeroGPU for: generous for the blanks at hand, short for priority."""
    return int(min(120, 15 + 0.05 * sum(map(bool, blank_mask))))


def _compute(key: str, input_ids: list[int], blank_mask: list[bool], cfg: DecodeConfig,
             spans: list[list[int]] | None = None):
    """Decode to the end; return (Trace, left-to-right log p of the filled blanks, seconds).
    key: a menu key (a name; model_menu.load resolves it through the menu)."""
    model, tok = model_menu.load(key)
    threads = model_menu.cpu_threads(model)
    with _LOCK:
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            t0 = time.perf_counter()
            trace = run(model, input_ids, blank_mask, cfg, tok, spans)
            # exact log p(blanks | visible text), one blank token at a time: the same scale for every order
            ar = float(score_blanks(model, trace.output_ids, blank_mask).sum())
            return trace, ar, time.perf_counter() - t0
        finally:
            torch.set_num_threads(before)


compute = spaces.GPU(duration=_duration)(_compute) if spaces is not None else _compute


def execute(settings: dict, enc, cfg: DecodeConfig, entry: dict) -> dict:
    """Compute a checked request (request.prepare_run) and return its run record."""
    t0 = time.perf_counter()
    trace, ar, _ = compute(entry["key"], enc.input_ids, enc.blank_mask, cfg, enc.blank_spans)
    _, tok = model_menu.load(entry["key"])
    return run_file.make_record(entry, settings, enc, trace, ar, time.perf_counter() - t0, tok)
