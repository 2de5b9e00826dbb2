"""Editing a story's blanks: the template text, the selection editor and the helpers, kept in step.

The template (text with [[N]] blanks) is the single source of truth. The editor (an interactive
gr.HighlightedText) shows it with every blank as a labelled `[[N]]` piece; the browser lets a
user select text inside a piece, which labels it. `from_editor` reads such a value back:

    a newly labelled piece of text      -> a new blank (length: the "new blank length" box, or a
                                           number typed as its label, or the text's token count)
    a blank piece whose label is a number -> that blank resized to the number
    a blank piece whose label was removed -> the blank undone (its original text restored when
                                           known, else dropped)

Per-user state is a small dict {"template", "originals"}: the text each blank replaced, in blank
order, when it was made by selection or a helper (None for typed blanks). Nothing here imports
Gradio; ui.py turns these values into component updates.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

from model.core.infill import (BLANK_RE, UNKNOWN_RANGE, Blank, blank_char_spans, blank_fraction_of_words, blank_random_sentence,
                          blanks_of, clean_text, encode_segments, format_template, merge_text,
                          parse_custom_order, parse_template, token_counter)

from .render import EDITOR_BLANK, blanks_table, editor_spans, md_escape

MAX_CHARS = 100_000  # a story's longest text: longer cannot fit any model's context here; refused before tokenizing
# a well-formed blank as the editor renders it: [[N]], [[?]] or [[a-b]]
MARKER_RE = re.compile(r"\[\[\s*(?:\+?\d{1,6}|\?|\d{1,3}\s*-\s*\d{1,3})\s*\]\]")


def new_state(template: str = "", originals: list | None = None) -> dict:
    return {"template": template, "originals": list(originals or [])}


def with_originals(segments: list, originals: list) -> list:
    """The segments with each blank remembering the text it replaced (originals, in blank order);
    everything else about a blank (its length, or the range the model chooses from) is kept."""
    it = iter(originals or [])
    return [replace(s, original=next(it, None)) if isinstance(s, Blank) else s for s in segments]


def segments_of(template: str, state: dict) -> list:
    """The template's segments, with the originals the per-user state remembers for this very
    template (a template edited since remembers none)."""
    same = state.get("template") == clean_text(template)[0]
    return with_originals(parse_template(template), state.get("originals") if same else [])


def state_of(segments: list) -> dict:
    return new_state(format_template(segments), [b.original for b in blanks_of(segments)])


@dataclass
class StoryView:
    template: str
    editor: list | None  # (text, label) pieces; None: leave the editor as it is
    table: list  # rows for the blanks table
    info: str  # Markdown (escaped)
    state: dict


def view(template: str, state: dict, tokenizer, max_positions: int, custom_order: str = "",
         note: str = "") -> StoryView:
    """Everything the story area shows for a template; problems go to `info`, never raise."""
    template = "" if template is None else template
    if not isinstance(template, str):  # only an API client sends this: nothing to show
        return StoryView("", None, [], "⚠️ the text must be text", new_state())
    if len(template) > MAX_CHARS:
        short = clean_text(template[:MAX_CHARS])[0]
        return StoryView(short, None, [], f"⚠️ the text is longer than {MAX_CHARS} characters; "
                         "shorten it", new_state(short))
    clean, removed = clean_text(template)
    if removed:
        note = (note + " " if note else "") + f"Removed {removed} control character{'s' if removed != 1 else ''}."
    try:
        segments = segments_of(clean, state)
    except ValueError as e:
        # editor None: leave the editor as it was (rendering the broken text there would turn its
        # well-formed [[N]] into plain text, which from_editor reads as undone blanks)
        return StoryView(clean, None, [], f"⚠️ {md_escape(str(e))}", new_state(clean))
    blanks = blanks_of(segments)
    table = blanks_table(segments)
    try:
        stages = parse_custom_order(custom_order, len(blanks)) if custom_order.strip() else None
    except ValueError:
        stages = None
    for row, g in zip(table, stages or range(1, len(table) + 1)):
        row.append(g)
    try:
        enc = encode_segments(tokenizer, segments, tokenizer.bos_token_id, max_positions)
        info = (f"{len(enc.input_ids)} tokens with the BOS (context {max_positions}) · {len(blanks)} blank"
                f"{'s' if len(blanks) != 1 else ''}: " + " + ".join(str(b.length) for b in blanks)
                + f" = {sum(b.length for b in blanks)} tokens to fill")
    except ValueError as e:
        info = f"⚠️ {md_escape(str(e))}"
    if note:
        info = f"{md_escape(note)}  \n{info}"
    return StoryView(clean, editor_spans(segments), table, info, new_state(clean, [b.original for b in blanks]))


def _label_length(label) -> int | None:
    s = str(label).strip()
    return int(s) if re.fullmatch(r"\d{1,6}", s) and int(s) > 0 else None


MAX_PIECES = 20_000  # far more than a story of MAX_CHARS characters renders to


def editor_pieces(value) -> list[tuple[str, object]]:
    """The editor's value as (text, label) pairs, or ValueError saying what is malformed. The
    browser sends [{"token": text, "class_or_confidence": label}, ...]; (text, label) pairs are
    accepted too. A label is text, a number or null."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("the editor's value must be a list of pieces {token: text, class_or_confidence: "
                         f"label}}; got {type(value).__name__}")
    if len(value) > MAX_PIECES:
        raise ValueError(f"the editor sent {len(value)} pieces; at most {MAX_PIECES} are accepted")
    out, chars = [], 0
    for i, piece in enumerate(value):
        if isinstance(piece, dict) and set(piece) <= {"token", "class_or_confidence"}:
            tok, label = piece.get("token"), piece.get("class_or_confidence")
        elif isinstance(piece, (list, tuple)) and len(piece) == 2:
            tok, label = piece
        else:
            raise ValueError(f"editor piece {i + 1} must be {{token: text, class_or_confidence: label}}")
        if not isinstance(tok, str):
            raise ValueError(f"editor piece {i + 1}: its token must be text")
        if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int, float))):
            raise ValueError(f"editor piece {i + 1}: its label must be text, a number or empty")
        chars += len(tok)
        if chars > MAX_CHARS:
            raise ValueError(f"the editor's text is longer than {MAX_CHARS} characters; shorten it")
        out.append((tok, label))
    return out


def from_editor(pieces, state: dict, tokenizer, new_length: int | None = None,
                choose_length: bool = False) -> tuple[list, str] | None:
    """Read the editor's value back into segments; None when nothing changed (our own render).
    A malformed value (only an API client sends one) is a ValueError saying what is wrong.

    choose_length: new blanks get a length the model chooses ([[?]]) instead of a number.
    Returns (segments, note)."""
    pieces = editor_pieces(pieces)
    if not pieces:
        return None
    count = token_counter(tokenizer)
    old = list(state.get("originals") or [])
    k = 0  # index of the next pre-existing blank
    changed, notes = False, []
    segments: list = []
    text, spans, lengths = "", [], []  # plain text since the last blank, and new selections in it

    def flush():
        nonlocal text, spans, lengths
        new = blank_char_spans(text, spans, count, lengths) if spans else [text]
        if choose_length:
            new = [replace(b, choose=UNKNOWN_RANGE) if isinstance(b, Blank) else b for b in new]
        segments.extend(new)
        text, spans, lengths = "", [], []

    for tok, label in pieces:
        tok = clean_text(tok)[0]
        marker = MARKER_RE.fullmatch(tok.strip())
        if label is None or label == "":
            # blank markers in plain text had their label removed: undo those blanks
            last = 0
            for m in MARKER_RE.finditer(tok):
                changed = True
                orig = old[k] if k < len(old) else None
                text += tok[last:m.start()] + (orig or "")
                if orig is None:
                    notes.append(f"removed blank {k + 1} (its original text is unknown)")
                    if text.endswith(" ") and tok[m.end():m.end() + 1] in (" ", ""):
                        text = text[:-1]  # no double space where the blank was
                k, last = k + 1, m.end()
            text += tok[last:]
        elif marker and str(label) == EDITOR_BLANK:
            flush()
            segments.append(replace(parse_template(tok.strip())[0], original=old[k] if k < len(old) else None))
            k += 1
        elif marker and _label_length(label):  # a blank's label edited to a number: resize it
            flush()
            changed = True
            segments.append(Blank(min(_label_length(label), 1024), old[k] if k < len(old) else None))
            k += 1
        elif tok.strip() and not BLANK_RE.search(tok):  # a new selection
            changed = True
            spans.append((len(text), len(text) + len(tok)))
            lengths.append(new_length if new_length else _label_length(label))
            text += tok
        else:  # a selection that cut through a [[N]] marker: keep the text as it was
            changed = True
            text += tok
    flush()
    if not changed:
        return None
    return merge_text(segments), "; ".join(notes).capitalize() + ("." if notes else "")


def random_sentence(template: str, state: dict, tokenizer, rng: random.Random) -> list:
    return blank_random_sentence(segments_of(template, state), rng, token_counter(tokenizer))


def fraction_of_words(template: str, state: dict, frac: float, tokenizer, rng: random.Random) -> list:
    return blank_fraction_of_words(segments_of(template, state), frac, rng, token_counter(tokenizer))


def restore(template: str, state: dict) -> tuple[list, int]:
    """Put back the original text of every blank that remembers it; (segments, how many)."""
    segments, n = [], 0
    for s in segments_of(template, state):
        if isinstance(s, Blank) and s.original is not None:
            segments.append(s.original)
            n += 1
        else:
            segments.append(s)
    return merge_text(segments), n
