"""Reading a run file back: the schema. A file may be hand-edited or hostile, so before anything
draws it the file is held to what this app writes (run_file.py):

- its nesting is measured before parsing (MAX_DEPTH), and it is at most MAX_FILE_BYTES;
- every field's type and range is checked, and the message names the bad field;
- the sequence is at most the largest context the app serves (T <= MAX_POSITIONS);
- every step fills at least one open blank, so there are no more steps than blank positions;
- the derivable stats are recomputed from the steps, not trusted;
- a blank the model ended itself (`chosen`) names a blank of the layout, its slots are all decided
  by the steps (a word, the empty token or closed), and only its slots close; its length and
  probabilities are recomputed from the steps;
- settings are held to the widgets' rules: the file's request is rebuilt by RunRequest.check.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from model.core.infill import clean_text

from .request import MAX_CHARS, MAX_CUSTOM_CHARS, MAX_SEED, RunRequest
from .run_file import (FORMAT, MAX_ALTERNATIVES, MAX_DEPTH, MAX_FILE_BYTES, MAX_ID, MAX_POSITIONS, MAX_TOKEN_CHARS,
                       VERSION, chosen_length_of, run_stats, trace_of)


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)  # a string, or an unterminated one to the end
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_depth(text: str) -> int:
    """How deep lists and objects nest in JSON text (brackets inside strings not counted), in
    linear time and without parsing it: json.loads would recurse once per level."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if not brackets:
        return 0
    b = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    return int(np.cumsum(np.where((b == ord("[")) | (b == ord("{")), 1, -1)).max())


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f"this is not a valid A3 Studio run file: {what}")


def _str(v, field: str, max_chars: int) -> str:
    _need(isinstance(v, str), f"{field} must be text")
    _need(len(v) <= max_chars, f"{field} is longer than {max_chars} characters")
    _need(not _SURROGATE.search(v), f"{field} holds a lone surrogate (\\ud800-\\udfff), which is not text")
    return v


def _int(v, field: str, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number (in [lo, hi] when given): JSON's, not text or true/false."""
    _need(isinstance(v, int) and not isinstance(v, bool), f"{field} must be a whole number")
    if lo is not None:
        _need(lo <= v <= hi, f"{field} must be {lo}" if lo == hi else f"{field} must be from {lo} to {hi}")
    return v


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v, field: str, lo: float | None = None, hi: float | None = None) -> float:
    """A finite number (in [lo, hi] when given)."""
    _need(_finite(v), f"{field} must be a finite number")
    if lo is not None:
        _need(lo <= v <= hi, f"{field} must be from {lo:g} to {hi:g}")
    return float(v)


def _list(v, field: str, hi: int, lo: int = 0) -> list:
    _need(isinstance(v, list), f"{field} must be a list")
    _need(lo <= len(v) <= hi, f"{field} must hold {lo} to {hi} entries; it holds {len(v)}" if lo < hi
          else f"{field} must hold {lo} entries, one per position; it holds {len(v)}")
    return v


def _obj(v, field: str) -> dict:
    _need(isinstance(v, dict), f"{field} must be an object")
    return v


def from_json(text, max_positions: int | None = None) -> dict:
    """Parse and check a run file (bytes or text); return a clean record or raise ValueError
    naming the bad field. max_positions: the longest sequence to accept (the largest context of
    the menu's models), never above MAX_POSITIONS."""
    limit = min(max_positions or MAX_POSITIONS, MAX_POSITIONS)
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_FILE_BYTES:
            raise ValueError(f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB; is it a run file?")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the file is not UTF-8 text; load a run file (.json) this app downloaded") from None
    if not isinstance(text, str):
        raise ValueError("no file came with the request; load a run file (.json) this app downloaded")
    if len(text) > MAX_FILE_BYTES:
        raise ValueError(f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB; is it a run file?")
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise ValueError(f"the file nests lists and objects {depth} deep; a run file needs at most {MAX_DEPTH}")
    try:
        raw = json.loads(text)
    except RecursionError:  # a backstop: the depth check above comes first
        raise ValueError(f"the file nests too deep; a run file needs at most {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise ValueError(f"the file is not JSON ({e}); load a file this app downloaded") from None
    return check_record(raw, limit)


def check_record(raw, limit: int = MAX_POSITIONS) -> dict:
    """A parsed run file held to the schema (see the module docstring): the clean record, or
    ValueError naming the first bad field."""
    _need(isinstance(raw, dict) and raw.get("format") == FORMAT, f"'format' must be {FORMAT!r}")
    _need(raw.get("version") == VERSION, f"'version' must be {VERSION}")
    ids = raw.get("input_ids")
    _need(isinstance(ids, list), "input_ids must be a list")
    _need(2 <= len(ids) <= limit, f"input_ids holds {len(ids)} positions; this server's models take 2 to {limit}")
    T = len(ids)
    for i, t in enumerate(ids):
        _int(t, f"input_ids[{i}]", 0, MAX_ID)
    mask = _list(raw.get("blank_mask"), "blank_mask", T, T)
    _need(all(isinstance(b, bool) for b in mask), "blank_mask must hold true or false for each position")
    _need(not mask[0], "blank_mask[0] is the BOS and cannot be a blank")
    blanks = [i for i, b in enumerate(mask) if b]
    _need(bool(blanks), "blank_mask has no blank")

    layout, blank_positions, chars = [], [], 0
    for j, p in enumerate(_list(raw.get("layout"), "layout", 2 * T, 1)):
        f = f"layout[{j}]"
        _obj(p, f)
        _need(p.get("kind") in ("text", "blank"), f"{f}.kind must be 'text' or 'blank'")
        text = _str(p.get("text"), f"{f}.text", MAX_CHARS)
        positions = _list(p.get("positions"), f"{f}.positions", T)
        for i, q in enumerate(positions):
            _int(q, f"{f}.positions[{i}]", 1, T - 1)
        original = p.get("original")
        if original is not None:
            _str(original, f"{f}.original", MAX_CHARS)
        chars += len(text) + len(original or "")
        if p["kind"] == "blank":
            _need(bool(positions), f"{f} is a blank with no positions")
            blank_positions += positions
        else:
            _need(not any(mask[q] for q in positions), f"{f} is text but holds a blank position")
        layout.append({"kind": p["kind"], "text": text, "positions": list(positions), "original": original})
    _need(chars <= 2 * MAX_CHARS, f"layout holds more than {2 * MAX_CHARS} characters of text")
    _need(blank_positions == blanks, "the blanks in layout do not match blank_mask")

    raw_steps = raw.get("steps")
    _need(isinstance(raw_steps, list), "steps must be a list")
    _need(len(raw_steps) <= len(blanks), f"steps holds {len(raw_steps)} steps but the run has {len(blanks)} "
          "blank positions, and every step fills at least one")
    steps, open_ = [], set(blanks)
    for k, s in enumerate(raw_steps):
        steps.append(_step(s, k, open_, T))
        open_ -= set(steps[-1]["positions"])
    rec = {"format": FORMAT, "version": VERSION, "model": _model(raw.get("model")),
           "settings": _settings(raw.get("settings")), "layout": layout, "input_ids": list(ids),
           "blank_mask": list(mask), "steps": steps}
    closed = {q for s in steps for q in s.get("closed", [])}
    if raw.get("chosen") is not None:
        rec["chosen"] = _chosen(raw["chosen"], layout, open_, closed)
    else:
        _need(not closed, "steps close blank slots, but the file names no blank whose length the model chose")
    fills = raw.get("fills")  # optional and derivable: a malformed one is dropped, not refused
    n_blanks = sum(p["kind"] == "blank" for p in layout)
    if isinstance(fills, list) and len(fills) == n_blanks and all(
            isinstance(x, str) and len(x) <= MAX_CHARS and not _SURROGATE.search(x) for x in fills):
        rec["fills"] = list(fills)
    st = raw.get("stats") if isinstance(raw.get("stats"), dict) else {}
    ar, total = st.get("ar_log_likelihood"), st.get("total_seconds")  # the two numbers steps do not hold
    filled = trace_of(rec)  # the story as filled, when the model ended a blank itself
    rec["stats"] = run_stats(filled, float(ar) if _finite(ar) and ar <= 0 else None,
                             float(total) if _finite(total) and 0 <= total <= 1e6 else 0.0,
                             steps if rec.get("chosen") else None)
    if rec.get("chosen"):
        rec["chosen"].update(chosen_length_of(rec, filled))
    created = raw.get("created")
    ok = isinstance(created, str) and len(created) <= 40 and not _SURROGATE.search(created)
    rec["created"] = created if ok else ""
    if raw.get("candidates") is not None:
        rec["candidates"] = [_candidate(c, i, n_blanks) for i, c in enumerate(_list(raw["candidates"], "candidates", 64))]
        r = _obj(raw.get("ranking"), "ranking")
        rec["ranking"] = {"rule": _str(r.get("rule"), "ranking.rule", 40), "pool": _str(r.get("pool"), "ranking.pool", 20),
                          "n": _int(r.get("n"), "ranking.n", 1, 64),
                          "lengths": [_int(x, f"ranking.lengths[{i}]", 1, MAX_POSITIONS)
                                      for i, x in enumerate(_list(r.get("lengths", []), "ranking.lengths", 64))],
                          "note": _str(r.get("note", ""), "ranking.note", 500)}
        if r.get("slots") is not None:
            rec["ranking"]["slots"] = _int(r["slots"], "ranking.slots", 1, MAX_POSITIONS)
        if r.get("length_head") is not None:  # what the model's length head believed (compute._head_length)
            h = _obj(r["length_head"], "ranking.length_head")
            rec["ranking"]["length_head"] = {
                **{k: _int(h.get(k), f"ranking.length_head.{k}", 0, MAX_POSITIONS) for k in ("median", "low", "high")},
                "p_chosen": _num(h.get("p_chosen"), "ranking.length_head.p_chosen", 0.0, 1.0),
                "weighed": [_int(x, f"ranking.length_head.weighed[{i}]", 1, MAX_POSITIONS)
                            for i, x in enumerate(_list(h.get("weighed", []), "ranking.length_head.weighed", 64, 1))]}
    return rec


def _chosen(c, layout: list[dict], open_: set[int], closed: set[int]) -> dict:
    """A blank the model ended itself: which blank, its least length, the empty token; every slot
    decided by the steps (none left open) and only its slots closed. The rest is recomputed."""
    _obj(c, "chosen")
    spans = [p["positions"] for p in layout if p["kind"] == "blank"]
    blank = _int(c.get("blank"), "chosen.blank", 0, len(spans) - 1)
    span = spans[blank]
    _need(not open_ & set(span), "chosen: a slot of the blank the model ended is neither filled nor closed")
    _need(closed <= set(span), "steps close positions outside the blank the model ended")
    return {"blank": blank, "least": _int(c.get("least"), "chosen.least", 1, len(span)),
            "empty_id": _int(c.get("empty_id"), "chosen.empty_id", 0, MAX_ID),
            "empty_token": _str(c.get("empty_token", ""), "chosen.empty_token", MAX_TOKEN_CHARS)}


def _candidate(c, i: int, n_blanks: int) -> dict:
    """A candidate's summary in a run file: who made it, its length, its scores and its fills."""
    f = f"candidates[{i}]"
    _obj(c, f)
    fills = _list(c.get("fills"), f"{f}.fills", n_blanks, n_blanks)
    return {"label": _str(c.get("label"), f"{f}.label", 200), "length": _int(c.get("length"), f"{f}.length", 1, MAX_POSITIONS),
            "value": _num(c.get("value"), f"{f}.value"), "right": None if c.get("right") is None else _num(c["right"], f"{f}.right"),
            "both": None if c.get("both") is None else _num(c["both"], f"{f}.both"),
            "fills": [_str(x, f"{f}.fills[{j}]", MAX_CHARS) for j, x in enumerate(fills)]}


def _step(s, k: int, open_: set[int], T: int) -> dict:
    """Step k, checked: it fills open blank positions (open_), one entry per position in each list."""
    f = f"steps[{k}]"
    _obj(s, f)
    _int(s.get("index"), f"{f}.index", k, k)
    positions = s.get("positions")
    _need(isinstance(positions, list) and positions, f"{f}.positions must list the positions it fills (at least one)")
    seen = set()
    for i, q in enumerate(positions):
        _need(isinstance(q, int) and not isinstance(q, bool) and q in open_ and q not in seen,
              f"{f}.positions[{i}] is not an open blank")
        seen.add(q)
    n = len(positions)
    for name in ("token_ids", "tokens", "probs", "entropy"):
        _list(s.get(name), f"{f}.{name}", n, n)
    out = {"index": k, "positions": list(positions),
           "token_ids": [_int(t, f"{f}.token_ids[{i}]", 0, MAX_ID) for i, t in enumerate(s["token_ids"])],
           "tokens": [_str(t, f"{f}.tokens[{i}]", MAX_TOKEN_CHARS) for i, t in enumerate(s["tokens"])],
           "probs": [_num(p, f"{f}.probs[{i}]", 0, 1) for i, p in enumerate(s["probs"])],
           "entropy": [_num(e, f"{f}.entropy[{i}]", 0, 1e3) for i, e in enumerate(s["entropy"])]}
    alts = _list(s.get("alternatives"), f"{f}.alternatives", n)
    _need(len(alts) in (0, n), f"{f}.alternatives must hold one list per position")
    out["alternatives"] = []
    for i, a in enumerate(alts):
        pairs = []
        for j, pair in enumerate(_list(a, f"{f}.alternatives[{i}]", MAX_ALTERNATIVES)):
            _need(isinstance(pair, list) and len(pair) == 2, f"{f}.alternatives[{i}][{j}] must be [text, probability]")
            pairs.append([_str(pair[0], f"{f}.alternatives[{i}][{j}][0]", MAX_TOKEN_CHARS),
                          _num(pair[1], f"{f}.alternatives[{i}][{j}][1]", 0, 1)])
        out["alternatives"].append(pairs)
    out["forward_passes"] = _int(s.get("forward_passes"), f"{f}.forward_passes", 0, MAX_ID)
    out["elapsed"] = _num(s.get("elapsed"), f"{f}.elapsed", 0, 1e6)
    out["pending"] = _int(s.get("pending"), f"{f}.pending", 0, T)
    # optional, per position (newer decoders record them); a sum of probabilities may round above 1
    for name, hi in (("excluded_mass", 1.001), ("empty_prob", 1.0)):
        if s.get(name) is not None:
            out[name] = [_num(x, f"{f}.{name}[{i}]", 0, hi) for i, x in enumerate(_list(s[name], f"{f}.{name}", n))]
    if s.get("closed") is not None:  # optional: blank slots a chosen-length fill left empty
        closed = _list(s["closed"], f"{f}.closed", T)
        for i, q in enumerate(closed):
            _need(isinstance(q, int) and not isinstance(q, bool) and q in open_ and q not in seen,
                  f"{f}.closed[{i}] is not an open blank")
            seen.add(q)
        out["closed"] = list(closed)
        open_ -= set(closed)
    return out


def _settings(s) -> dict:
    """The file's request: its JSON types checked here (each message names the field), then the
    RunRequest rebuilt through the same checks as the widgets' values (RunRequest.from_settings)."""
    s = {**RunRequest().settings, **_obj(s, "settings")}
    _str(s["template"], "settings.template", MAX_CHARS)
    _str(s["strategy"], "settings.strategy", 40)
    _int(s["group_size"], "settings.group_size")
    if s["threshold"] is not None:
        _num(s["threshold"], "settings.threshold")
    _str(s["custom_order"], "settings.custom_order", MAX_CUSTOM_CHARS)
    _num(s["temperature"], "settings.temperature")
    _int(s["top_k"], "settings.top_k")
    _num(s["top_p"], "settings.top_p")
    _int(s["seed"], "settings.seed", 0, MAX_SEED)
    _need(s["context"] in ("block", "causal"), "settings.context must be 'block' or 'causal'")
    try:
        return RunRequest.from_settings(s).settings
    except ValueError as e:
        _need(False, f"settings: {e}")


def _model(m) -> dict:
    """What the file says about its model (shown, never loaded): label, key, trained."""
    m = m if isinstance(m, dict) else {}
    text = lambda x, n: clean_text(x)[0][:n] if isinstance(x, str) else ""
    key = text(m.get("key"), 200) or Path(text(m.get("path"), 1000)).name  # files before keys were names
    return {"label": text(m.get("label"), 200), "key": key, "trained": m.get("trained") is True}
