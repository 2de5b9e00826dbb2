"""Run files: a run as plain data (a record), built from the core's Trace and written for download.

A record is a JSON-ready dict; the UI animates it, draws it, writes it to a file (`save_run`,
`to_json`); run_schema.py reads a file back. Shape:

    format, version         "a3-studio-run", 1
    model                   {label, key, trained}   (key: the menu's name; never a server path)
    settings                the run's request.RunRequest as it is (its `settings`): {template, strategy,
                             group_size, threshold, custom_order, temperature, top_k, top_p, seed,
                             candidates, pool, context}; every candidate's record holds the same
    layout                  [{kind: "text"|"blank", text, positions, original}]  (infill.Piece)
    input_ids, blank_mask   the request as decoded (BOS first)
    steps                   [model.core.decode.Step as a dict], in order
    fills                   each blank's tokens decoded together (optional; set by the app)
    stats                   {forward_passes, decode_seconds, tokens, tokens_per_s, log_likelihood,
                             factorization, ar_log_likelihood, total_seconds}
    candidates, ranking     a candidate run's ranked candidates (label, length, scores, fills) and
                            how they were ranked (optional; ranking.slots: the M slots the model ended
                            each fill within)
    chosen                  a blank the model ended with its learned length signal (optional):
                            {blank, least, empty_id, empty_token} as decoded, and what follows from
                            the steps: {slots, length, p_end, p_length (left to right only)}
    created                 ISO time (UTC)

A record with `chosen` holds the run as decoded: its layout, ids and steps in slot coordinates,
a step's `closed` listing the slots the fill's end closed, the ending slot holding the empty
token. That is what the animation shows (render.py hides the ended slots frame by frame).
Everything that reads the story as filled goes through `trace_of` (the compacted Trace:
fills, stats) or `filled_record` (the same record without the empty slots: the /fill answer).
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path


from model.core.chosen_length import SlackBlank, compact
from model.core.trace import Trace


FORMAT = "a3-studio-run"
VERSION = 1
MAX_FILE_BYTES = 20_000_000
MAX_POSITIONS = 8192  # the longest sequence a run file may hold: the largest context the app serves
MAX_DEPTH = 16  # nesting of lists and objects; a record needs 6 (steps > step > alternatives > pair)
MAX_TOKEN_CHARS = 1000  # one token's text
MAX_ALTERNATIVES = 50  # per position (the decoder records 5)
MAX_ID = 2 ** 31 - 1
RUN_DIR = Path(tempfile.gettempdir()) / "a3-studio-runs"  # the files offered for download
SWEEP_S = 60.0  # at most one sweep of RUN_DIR for hour-old files a minute
_SWEPT = [-1e9]  # monotonic time of the last sweep



def factorization(trace: Trace) -> str:
    """How exact a run's own log-likelihood is (docs/DESIGN.md, "The factorization")."""
    return "exact (one token per step)" if trace.exact \
        else "group-factorized (tokens of a step are independent given earlier steps)"


def trace_of(record: dict) -> Trace:
    """The core's Trace of a record (its steps stay dicts): fills, grouping and log p in one place.
    A blank the model ended (`chosen`): the story as filled (chosen_length.compact, Trace.chosen)."""
    spans = [p["positions"] for p in record["layout"] if p["kind"] == "blank"]
    trace = Trace(record["input_ids"], record["blank_mask"], record["steps"],
                  record["settings"].get("context", "block"), spans)
    ch = record.get("chosen")
    if not ch:
        return trace
    span = spans[ch["blank"]]
    return compact(trace, SlackBlank(span[0], len(span), ch["empty_id"], ch["least"]))


def ended_slots(record: dict, k: int | None = None) -> set[int]:
    """The slots of a record's `chosen` blank that the first k steps (all by default) ended: the
    one given the empty token and those closed after it. They leave the story from that frame on."""
    ch = record.get("chosen")
    if not ch:
        return set()
    out = set()
    for s in record["steps"][:k]:
        out.update(s.get("closed") or [])
        out.update(p for p, t in zip(s["positions"], s["token_ids"]) if t == ch["empty_id"])
    return out & set([p for p in record["layout"] if p["kind"] == "blank"][ch["blank"]]["positions"])


def filled_record(record: dict) -> dict:
    """The record of the story as filled: a blank the model ended without its empty slots (layout,
    ids and steps moved up, as trace_of's Trace), `chosen` dropped; any other record as it is."""
    if not record.get("chosen"):
        return record
    t, gone = trace_of(record), ended_slots(record)
    at = {p: i for i, p in enumerate(q for q in range(len(record["input_ids"])) if q not in gone)}
    layout = [{**p, "positions": [at[q] for q in p["positions"] if q in at]} for p in record["layout"]]
    return {**record, "layout": layout, "input_ids": t.input_ids, "blank_mask": t.blank_mask, "steps": t.steps,
            "chosen": None}


def run_stats(trace: Trace, ar_logp: float | None, total_seconds: float, steps: list | None = None) -> dict:
    """The stats of a run, from its steps (and the two numbers the steps do not hold). steps: the
    run as decoded, when `trace` is its story as filled (their passes and seconds)."""
    n_tok = sum(len(s["positions"] if isinstance(s, dict) else s.positions) for s in trace.steps)
    done = Trace(trace.input_ids, trace.blank_mask, steps) if steps else trace
    secs = done.seconds
    return {"forward_passes": done.forward_passes, "decode_seconds": secs,
            "tokens": n_tok, "tokens_per_s": n_tok / secs if secs > 0 else None,
            "log_likelihood": trace.log_likelihood, "factorization": factorization(trace),
            "ar_log_likelihood": ar_logp, "total_seconds": total_seconds}


def chosen_length_of(record: dict, filled: Trace) -> dict:
    """What the steps say of a blank the model ended: slots, length, p_end, and p_length only for a
    fill read left to right (its slots decided one a step, in order), the one order in which the
    product of (1 - p(empty)) over the words times p_end is the probability of that length."""
    out = dict(filled.chosen)
    span = set([p for p in record["layout"] if p["kind"] == "blank"][record["chosen"]["blank"]]["positions"])
    per_step = [[p for p in s["positions"] if p in span] for s in record["steps"]]
    order = [p for ps in per_step for p in ps]
    if any(len(ps) > 1 for ps in per_step) or order != sorted(order):
        out.pop("p_length", None)
    return out


CHOSEN_KEYS = ("blank", "least", "empty_id", "empty_token")  # what a record's `chosen` keeps of the plan


def make_record(model_entry: dict, settings: dict, encoded, trace: Trace | None = None,
                ar_logp: float | None = None, total_seconds: float = 0.0, tokenizer=None,
                chosen: dict | None = None) -> dict:
    """Assemble a record (settings: RunRequest.settings; encoded: infill.Encoded; trace: the
    finished run, None for frame 0 of a run still computing). With a tokenizer the record carries
    each blank's fill as one string. chosen: the plan's slack blank (candidate_plan.CandidatePlan.slack)
    when `trace` is a run whose blank the model ended, as decoded."""
    trace = trace or Trace(list(encoded.input_ids), list(encoded.blank_mask), [])
    steps = [asdict(s) if not isinstance(s, dict) else s for s in trace.steps]
    for s in steps:
        s["alternatives"] = [[[t, p] for t, p in alts] for alts in s["alternatives"]]
    rec = {
        "format": FORMAT, "version": VERSION, "model": dict(model_entry), "settings": dict(settings),
        "layout": [asdict(p) for p in encoded.layout],
        "input_ids": list(encoded.input_ids), "blank_mask": list(encoded.blank_mask), "steps": steps,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if chosen and steps:
        rec["chosen"] = {k: chosen[k] for k in CHOSEN_KEYS}
    filled = trace_of(rec)
    rec["stats"] = run_stats(filled, ar_logp, total_seconds, steps if chosen else None)
    if rec.get("chosen"):
        rec["chosen"].update(chosen_length_of(rec, filled))
    if tokenizer is not None and steps:
        rec["fills"] = filled.fills(tokenizer)
    return rec


def save_run(rec: dict) -> str:
    """Write a run file for the download button; files older than an hour are removed."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if time.monotonic() - _SWEPT[0] > SWEEP_S:  # not on every run: the folder holds an hour of them
        _SWEPT[0] = time.monotonic()
        for old in RUN_DIR.iterdir():
            try:
                if time.time() - old.stat().st_mtime > 3600:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
    d = RUN_DIR / uuid.uuid4().hex[:12]
    d.mkdir()
    s = rec["settings"]
    path = d / f"a3-run-{s['strategy']}-seed{s['seed']}.json"
    path.write_text(to_json(rec), encoding="utf-8", errors="replace")  # settings are cleaned; this is a backstop
    return str(path)


def to_json(record: dict) -> str:
    """The file's text: a candidate run keeps each candidate's summary and fills, not its steps."""
    if record.get("candidates"):
        record = {**record, "candidates": [
            {k: c[k] for k in ("label", "length", "value", "right", "both")}
            | {"fills": c.get("fills") or (c.get("record") or {}).get("fills") or []} for c in record["candidates"]]}
        record.pop("shown", None)
    return json.dumps(record, ensure_ascii=False, indent=1)
