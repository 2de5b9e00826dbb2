"""Run files: a run as plain data (a record), written for download and read back for replay.

A record is a JSON-ready dict built from the core's Trace; the UI animates it, draws it, writes
it to a file (`save_run`, `to_json`) and reads it back (`from_json`, which checks a loaded file
field by field, so a hand-edited file gives a message rather than a traceback). Shape:

    format, version         "a3-studio-run", 1
    model                   {label, path, trained}
    settings                {template, strategy, group_size, threshold, custom_order, temperature,
                             top_k, top_p, seed, context}
    layout                  [{kind: "text"|"blank", text, positions, original}]  (infill.Piece)
    input_ids, blank_mask   the request as decoded (BOS first)
    steps                   [model.core.decode.Step as a dict], in order
    fills                   each blank's tokens decoded together (optional; set by the app)
    stats                   {forward_passes, decode_seconds, tokens, tokens_per_s, log_likelihood,
                             factorization, ar_log_likelihood, total_seconds}
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
RUN_DIR = Path(tempfile.gettempdir()) / "a3-studio-runs"  # the files offered for download

STEP_FIELDS = {"index": int, "positions": list, "token_ids": list, "tokens": list, "probs": list,
               "alternatives": list, "entropy": list, "forward_passes": int, "elapsed": (int, float),
               "pending": int}
SETTINGS_DEFAULTS = {"template": "", "strategy": "left_to_right", "group_size": 1, "threshold": None,
                     "custom_order": "", "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0,
                     "context": "block"}


def factorization(trace: Trace) -> str:
    """How exact a run's own log-likelihood is (docs/DESIGN.md, "The factorization")."""
    return "exact (one token per step)" if trace.exact \
        else "group-factorized (tokens of a step are independent given earlier steps)"


def trace_of(record: dict) -> Trace:
    """The core's Trace of a record (its steps stay dicts): fills, grouping and log p in one place."""
    spans = [p["positions"] for p in record["layout"] if p["kind"] == "blank"]
    return Trace(record["input_ids"], record["blank_mask"], record["steps"],
                 record["settings"].get("context", "block"), spans)


def make_record(model_entry: dict, settings: dict, encoded, trace: Trace | None = None,
                ar_logp: float | None = None, total_seconds: float = 0.0, tokenizer=None) -> dict:
    """Assemble a record (encoded: infill.Encoded; trace: the finished run, None for frame 0 of a
    run still computing). With a tokenizer the record carries each blank's fill as one string."""
    trace = trace or Trace(list(encoded.input_ids), list(encoded.blank_mask), [])
    steps = [asdict(s) if not isinstance(s, dict) else s for s in trace.steps]
    for s in steps:
        s["alternatives"] = [[[t, p] for t, p in alts] for alts in s["alternatives"]]
    n_tok = sum(len(s["positions"]) for s in steps)
    secs = trace.seconds
    rec = {
        "format": FORMAT, "version": VERSION, "model": dict(model_entry), "settings": dict(settings),
        "layout": [asdict(p) for p in encoded.layout],
        "input_ids": list(encoded.input_ids), "blank_mask": list(encoded.blank_mask), "steps": steps,
        "stats": {"forward_passes": trace.forward_passes, "decode_seconds": secs,
                  "tokens": n_tok, "tokens_per_s": n_tok / secs if secs > 0 else None,
                  "log_likelihood": trace.log_likelihood, "factorization": factorization(trace),
                  "ar_log_likelihood": ar_logp, "total_seconds": total_seconds},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if tokenizer is not None and steps:
        rec["fills"] = trace_of(rec).fills(tokenizer)
    return rec


def save_run(rec: dict) -> str:
    """Write a run file for the download button; files older than an hour are removed."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
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
    path.write_text(to_json(rec), encoding="utf-8")
    return str(path)


def to_json(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, indent=1)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f"this is not a valid A3 Studio run file: {what}")


def from_json(text: str | bytes) -> dict:
    """Parse and check a run file; raise ValueError saying what is wrong."""
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise ValueError(f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB; is it a run file?")
        text = text.decode("utf-8", errors="replace")
    try:
        rec = json.loads(text)
    except ValueError as e:
        raise ValueError(f"the file is not JSON ({e}); load a file this app downloaded") from None
    _need(isinstance(rec, dict) and rec.get("format") == FORMAT, f"'format' must be {FORMAT!r}")
    _need(rec.get("version") == VERSION, f"version {rec.get('version')!r} is not {VERSION}")
    for key, typ in (("layout", list), ("input_ids", list), ("blank_mask", list), ("steps", list),
                     ("settings", dict), ("stats", dict)):
        _need(isinstance(rec.get(key), typ), f"'{key}' is missing or not a {typ.__name__}")
    T = len(rec["input_ids"])
    _need(len(rec["blank_mask"]) == T, "'blank_mask' and 'input_ids' differ in length")
    blanks = {i for i, b in enumerate(rec["blank_mask"]) if b}
    for p in rec["layout"]:
        _need(isinstance(p, dict) and p.get("kind") in ("text", "blank") and isinstance(p.get("text"), str)
              and isinstance(p.get("positions"), list), "a 'layout' entry is malformed")
        _need(all(isinstance(i, int) and 0 <= i < T for i in p["positions"]), "a layout position is out of range")
    seen = set()
    for s in rec["steps"]:
        _need(isinstance(s, dict), "a step is not an object")
        for k, typ in STEP_FIELDS.items():
            _need(isinstance(s.get(k), typ), f"step field '{k}' is missing or has the wrong type")
        n = len(s["positions"])
        _need(all(len(s[k]) == n for k in ("token_ids", "tokens", "probs", "entropy")),
              f"step {s['index']} lists differ in length")
        _need(all(p in blanks and p not in seen for p in s["positions"]),
              f"step {s['index']} fills a position that is not an open blank")
        _need(all(isinstance(t, str) for t in s["tokens"]), f"step {s['index']} has a non-text token")
        _need(all(isinstance(p, (int, float)) and 0 <= p <= 1 for p in s["probs"]),
              f"step {s['index']} has a probability outside [0, 1]")
        seen.update(s["positions"])
    fills = rec.get("fills")
    if fills is not None and not (isinstance(fills, list) and all(isinstance(f, str) for f in fills)):
        rec.pop("fills")  # optional and derivable: drop a malformed one rather than refuse the file
    rec["model"] = rec.get("model") if isinstance(rec.get("model"), dict) else {}
    rec["settings"] = {**SETTINGS_DEFAULTS, **rec["settings"]}
    return rec
