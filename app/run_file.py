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
                            how they were ranked (optional)
    created                 ISO time (UTC)
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path


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
    """The core's Trace of a record (its steps stay dicts): fills, grouping and log p in one place."""
    spans = [p["positions"] for p in record["layout"] if p["kind"] == "blank"]
    return Trace(record["input_ids"], record["blank_mask"], record["steps"],
                 record["settings"].get("context", "block"), spans)


def run_stats(trace: Trace, ar_logp: float | None, total_seconds: float) -> dict:
    """The stats of a run, from its steps (and the two numbers the steps do not hold)."""
    n_tok = sum(len(s["positions"] if isinstance(s, dict) else s.positions) for s in trace.steps)
    secs = trace.seconds
    return {"forward_passes": trace.forward_passes, "decode_seconds": secs,
            "tokens": n_tok, "tokens_per_s": n_tok / secs if secs > 0 else None,
            "log_likelihood": trace.log_likelihood, "factorization": factorization(trace),
            "ar_log_likelihood": ar_logp, "total_seconds": total_seconds}


def make_record(model_entry: dict, settings: dict, encoded, trace: Trace | None = None,
                ar_logp: float | None = None, total_seconds: float = 0.0, tokenizer=None) -> dict:
    """Assemble a record (settings: RunRequest.settings; encoded: infill.Encoded; trace: the
    finished run, None for frame 0 of a run still computing). With a tokenizer the record carries
    each blank's fill as one string."""
    trace = trace or Trace(list(encoded.input_ids), list(encoded.blank_mask), [])
    steps = [asdict(s) if not isinstance(s, dict) else s for s in trace.steps]
    for s in steps:
        s["alternatives"] = [[[t, p] for t, p in alts] for alts in s["alternatives"]]
    rec = {
        "format": FORMAT, "version": VERSION, "model": dict(model_entry), "settings": dict(settings),
        "layout": [asdict(p) for p in encoded.layout],
        "input_ids": list(encoded.input_ids), "blank_mask": list(encoded.blank_mask), "steps": steps,
        "stats": run_stats(trace, ar_logp, total_seconds),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if tokenizer is not None and steps:
        rec["fills"] = trace_of(rec).fills(tokenizer)
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
