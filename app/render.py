"""Pure formatters: a run record (run_file.py) -> what the page shows as text. No Gradio, no model.

    frame_spans(rec, k)   (text, label) pairs for gr.HighlightedText after k steps
    caption(rec, k)       the step counter line
    stats_rows(rec)       speed and likelihood numbers of a run
    filled_text(rec)      the story with every blank filled, as plain text
    editor_spans(...)     the blank editor's value for a template
    chosen_note(rec)      how long the model made a blank it ended itself, and how sure it was (words)
    api_answer(rec)       a finished run as the /fill API returns it: plain JSON data
A blank the model ends itself (a record with `chosen`, run_file.py) is drawn as decoded: its M
slots pending (▁) until a step ends the fill, and from that frame on without the slots it closed.
All strings that came from a user or a model are returned as data for components that render
text as text (HighlightedText, Textbox, Dataframe); `md_escape` guards the few that go into
Markdown.
"""
from __future__ import annotations


from model.core.decode import DYNAMIC_ORDERS
from model.core.infill import Blank, Segment

from .run_file import ended_slots, filled_record, trace_of
from .texts import md_escape, order_label  # noqa: F401 (md_escape: re-exported for the UI)

PENDING = "blank"  # label of a token still to be generated
PENDING_CHAR = "\u2581"  # ▁ one per pending token, so a blank's length is visible
BINS = ((0.1, "p<0.1"), (0.3, "p 0.1-0.3"), (0.6, "p 0.3-0.6"), (0.9, "p 0.6-0.9"), (1.01, "p≥0.9"))
NEW = "new "  # prefix of the labels of tokens committed in the step shown
# earlier tokens: light fills; this step's tokens: the same hues, strong
BIN_COLORS = ("#fecaca", "#fed7aa", "#fef08a", "#d9f99d", "#bbf7d0")
NEW_COLORS = ("#ef4444", "#f97316", "#eab308", "#84cc16", "#22c55e")
COLOR_MAP = {PENDING: "#cbd5e1",
             **{b: c for (_, b), c in zip(BINS, BIN_COLORS)},
             **{f"{NEW}{b}": c for (_, b), c in zip(BINS, NEW_COLORS)}}
EDITOR_BLANK = "blank"
EDITOR_COLORS = {EDITOR_BLANK: "#93c5fd"}


def prob_bin(p: float) -> str:
    return next(label for hi, label in BINS if p < hi)


def _committed(rec: dict, k: int) -> dict[int, tuple[str, float, int]]:
    """position -> (token text, prob, step index) for the first k steps."""
    out = {}
    for s in rec["steps"][:k]:
        for p, t, pr in zip(s["positions"], s["tokens"], s["probs"]):
            out[p] = (t, pr, s["index"])
    return out


def frame_spans(rec: dict, k: int | None = None) -> list[tuple[str, str | None]]:
    """The story after k steps (all of them by default): visible text unlabelled, pending
    blank tokens as ▁, tokens labelled by their probability bin ("new ..." for step k); the slots
    of a fill the model has ended by then are gone."""
    steps = rec["steps"]
    k = len(steps) if k is None else max(0, min(int(k), len(steps)))
    done, gone = _committed(rec, k), ended_slots(rec, k)
    out: list[tuple[str, str | None]] = []
    for piece in rec["layout"]:
        if piece["kind"] == "text":
            out.append((piece["text"], None))
            continue
        lead = piece["text"]
        for j, pos in enumerate(piece["positions"]):
            if pos in gone:
                continue
            if pos in done:
                tok, p, idx = done[pos]
                label = (NEW if idx == k - 1 else "") + prob_bin(p)
                out.append((tok, label))  # as generated: the blank's own space is the model's to write
            else:
                out.append(((lead if j == 0 else "") + PENDING_CHAR, PENDING))
    return out


def caption(rec: dict, k: int | None = None) -> str:
    """'Step 3 of 10 · 2 tokens · 3 forward passes · 0.021 s' (plain text)."""
    steps = rec["steps"]
    n = len(steps)
    k = n if k is None else max(0, min(int(k), n))
    total = sum(len(p["positions"]) for p in rec["layout"] if p["kind"] == "blank")
    if k == 0:
        return f"Step 0{f' of {n}' if n else ''} · {total} blank tokens pending"
    s = steps[k - 1]
    ended = ended_slots(rec, k) - ended_slots(rec, k - 1)  # the fill's end, written in this step
    words = [t for p, t in zip(s["positions"], s["tokens"]) if p not in ended]
    toks = " ".join(repr(t) for t in words[:6]) + (" …" if len(words) > 6 else "")
    parts = [f"Step {k} of {n}"]
    if words or not ended:
        parts.append(f"filled {len(words)} token{'s' if len(words) != 1 else ''}: {toks}")
    if ended:
        parts.append(f"the model ended the fill: {len(ended)} slot{'s' if len(ended) != 1 else ''} closed")
    return " · ".join(parts + [f"{s['pending']} pending", f"{s['forward_passes']} forward passes",
                               f"{s['elapsed']:.3f} s"])


def filled_text(rec: dict, k: int | None = None) -> str:
    """The story as plain text after k steps (pending tokens shown as ▁). When the run is
    complete and the record carries `fills` (each blank decoded as one piece, so characters
    split across byte tokens come out whole), those are used."""
    fills = rec.get("fills")
    if (k is None or k >= len(rec["steps"])) and fills and len(fills) == sum(p["kind"] == "blank" for p in rec["layout"]):
        it = iter(fills)
        return "".join(p["text"] if p["kind"] == "text" else next(it) for p in rec["layout"])
    return "".join(t for t, _ in frame_spans(rec, k))


def _fmt(x, spec: str, none: str = "–") -> str:
    return none if x is None else format(x, spec)


def stats_rows(rec: dict) -> list[tuple[str, str]]:
    """(name, value) rows: speed and likelihood of one run (How it works explains the two log p)."""
    st = rec["stats"]
    exact = trace_of(rec).exact
    return [
        ("order", order_text(rec)),
        ("steps", str(len(rec["steps"]))),
        ("tokens generated", str(st.get("tokens"))),
        ("forward passes", str(st.get("forward_passes"))),
        ("decode wall time", f"{_fmt(st.get('decode_seconds'), '.3f')} s"),
        ("tokens / s", _fmt(st.get("tokens_per_s"), ".1f")),
        ("log p, this run's order", f"{_fmt(st.get('log_likelihood'), '.2f')} "
                                    f"({'exact' if exact else 'group-factorized'})"),
        ("log p, left-to-right", f"{_fmt(st.get('ar_log_likelihood'), '.2f')} (exact)"),
    ] + ([("length the model chose", _chosen_cell(rec["chosen"]))] if rec.get("chosen") else [])


def _chosen_cell(ch: dict) -> str:
    """'12 of 16 slots · p(end there) 0.83 · p(this length) 0.41' for the stats table."""
    out = f"{ch['length']} of {ch['slots']} slots"
    if ch.get("p_end") is not None:
        out += f" · p(end there) {ch['p_end']:.2f}"
    if ch.get("p_length") is not None:
        out += f" · p(this length) {ch['p_length']:.2f}"
    return out


def chosen_note(rec: dict) -> str:
    """How long the model made a blank it ended itself, and how sure it was, in words ("" for a
    record without one): 'The model ended the fill after 12 tokens (p = 0.83 that it ends there).'"""
    ch = rec.get("chosen")
    if not ch:
        return ""
    n = ch["length"]
    tokens = f"{n} token{'s' if n != 1 else ''}"
    if ch.get("p_end") is None:
        return f"The model used all {ch['slots']} slots of the blank without ending the fill ({tokens})."
    sure = f"p = {ch['p_end']:.2f} that it ends there"
    if ch.get("p_length") is not None:
        sure += f"; p = {ch['p_length']:.2f} that the fill is exactly {tokens} long, reading left to right"
    return f"The model ended the fill after {tokens} ({sure})."


def order_text(rec: dict) -> str:
    """The order that made a record's fill: its request's, or the label of the candidate shown."""
    made_by = (rec.get("candidates") or [{}])[rec.get("shown", 0)].get("label")
    return made_by or strategy_label(rec["settings"])


def strategy_label(settings: dict) -> str:
    """A request's order in words: 'left-to-right, group size 2', 'dynamic: confidence, p ≥ 0.5 per step'."""
    s = settings.get("strategy", "")
    name = order_label(s)
    dynamic = s in DYNAMIC_ORDERS
    if dynamic and settings.get("threshold"):
        return f"{name}, p ≥ {settings['threshold']:g} per step"
    if s == "custom":
        return f"{name} '{settings.get('custom_order', '')}', {settings.get('group_size', 1)} per blank per step"
    return f"{name}, {'k' if dynamic else 'group size'} {settings.get('group_size', 1)}"


def editor_spans(segments: list[Segment]) -> list[tuple[str, str | None]]:
    """The blank editor's value: visible text unlabelled, each blank as its [[N]] marker."""
    return [(s.marker, EDITOR_BLANK) if isinstance(s, Blank) else (s, None) for s in segments]


def blanks_table(segments: list[Segment], width: int = 24) -> list[list]:
    """Rows [#, tokens, text before it, original] for the blanks of a story (display only)."""
    rows, before = [], ""
    for s in segments:
        if isinstance(s, Blank):
            ctx = before[-width:].replace("\n", " ")
            size = str(s.length) if s.choose is None else f"{s.choose[0]}-{s.choose[1]} (model's choice)"
            rows.append([len(rows) + 1, size, ("…" if len(before) > width else "") + ctx, s.original or ""])
        else:
            before = s
    return rows


RULE_NAMES = {"mbr": "agreement with the other candidates (MBR)",
              "fluent_mbr": "agreement with the other candidates (MBR), fluent fills first",
              "fluent_mix": "log p of the text after the blank plus agreement with the other candidates, fluent fills first",
              "right": "log p of the text after the blank",
              "story": "log p of the whole story", "both_per_token": "log p of the fill given both sides, per token",
              "greedy": "your settings first",
              "mix": "log p of the text after the blank plus agreement with the other candidates"}


def candidate_rows(rec: dict) -> list[list]:
    """[rank, fill, length, made by, score, log p after the blank, log p fill | both sides] per
    candidate of a run, best first; [] for a plain run. log p after the blank, and given both
    sides, are None where the run did not compute them (a CPU ranking by a rule that does not read
    them: compute.py; both sides are still scored for the fill shown first)."""
    rows = []
    for i, c in enumerate(rec.get("candidates") or []):
        fills = c.get("fills") or (c.get("record") or {}).get("fills") or []
        rows.append([i + 1, " / ".join(f.strip() for f in fills), c["length"], c["label"], round(c["value"], 3),
                     None if c.get("right") is None else round(c["right"], 2),
                     None if c.get("both") is None else round(c["both"], 2)])
    return rows


def ranking_note(rec: dict) -> str:
    """'Best of 4 candidates (orders pool) by ...; chosen length 12 (runners-up 8, 17)' (plain text)."""
    r = rec["ranking"]
    cands = rec["candidates"]
    text = (f"Best of {len(cands)} candidates ({r['pool']} pool) by {RULE_NAMES.get(r['rule'], r['rule'])}"
            + (f", showing #{rec['shown'] + 1}" if rec.get("shown") else "") + "." if len(cands) > 1
            else "One candidate: your settings.")
    if h := r.get("length_head"):
        text += (f" Length {cands[0]['length']} tokens, chosen by the model's length head among "
                 f"{', '.join(map(str, h['weighed']))} ({h['p_chosen']:.0%} of its belief over them; it expects "
                 f"about {h['median']} tokens, half its belief within {h['low']}-{h['high']}).")
    elif r.get("lengths"):
        seen = list(dict.fromkeys(c["length"] for c in cands))
        text += f" Chosen length {seen[0]} tokens (runners-up: {', '.join(map(str, seen[1:4])) or 'none'})."
    if r.get("slots"):
        lengths = ", ".join(str(c["length"]) for c in cands[:8])
        text += (f" The model ended {'each' if len(cands) > 1 else 'the'} fill itself, within {r['slots']} slots: "
                 f"{lengths} tokens.")
    if len(cands) > 1 and all(c.get("right") is None for c in cands):
        text += (" Log p after the blank not scored: this rule does not read it, and on a CPU it is most of"
                 " the ranking's time.")
    if len(cands) > 1 and any(c.get("both") is None for c in cands):
        text += (" Log p given both sides is scored for a fill when it is shown (and for the left-to-right one):"
                 " on a CPU the rule does not need it for the others.")
    if r.get("note"):
        text += f" Note: {r['note']}."
    return text


def api_answer(rec: dict) -> dict:
    """A finished run as plain data (the /fill API): the filled text; each blank's fill with its
    tokens, their probabilities and the step that wrote each; the order and its steps; the run's
    log-likelihoods; for a blank the model ended itself, its length and how sure the model was of
    it (chosen_length); and, for a candidate run, the ranked candidates and the rule."""
    ch = rec.get("chosen")
    rec = filled_record(rec)  # the story as filled: no empty slot, positions as in the text
    done = _committed(rec, None)
    fills = rec.get("fills") or []
    blanks = [p for p in rec["layout"] if p["kind"] == "blank"]
    st = rec["stats"]
    return {
        "text": filled_text(rec),
        "blanks": [{"fill": fills[i] if i < len(fills) else "".join(done[q][0] for q in p["positions"]),
                    "tokens": [done[q][0] for q in p["positions"]], "probs": [done[q][1] for q in p["positions"]],
                    "steps": [done[q][2] for q in p["positions"]]} for i, p in enumerate(blanks)],
        "order": {"name": rec["settings"]["strategy"], "label": order_text(rec),
                  "steps": [s["positions"] for s in rec["steps"]]},
        "log_likelihood": st["log_likelihood"], "factorization": st["factorization"],
        "left_to_right_log_likelihood": st["ar_log_likelihood"],
        "chosen_length": None if not ch else {
            "blank": ch["blank"], "length": ch["length"], "slots": ch["slots"], "p_end": ch.get("p_end"),
            "p_length": ch.get("p_length"), "text": chosen_note({"chosen": ch})},
        "model": rec["model"]["key"], "settings": dict(rec["settings"]),
        "candidates": [{"rank": r[0], "fill": r[1], "tokens": r[2], "made_by": r[3], "score": r[4],
                        "log_p_after_blank": r[5], "log_p_fill_given_both_sides": r[6]} for r in candidate_rows(rec)],
        "ranking": rec.get("ranking"),
    }
