"""Text with blanks <-> one BOS-first token sequence and its blank mask (no UI, no model).

A story with blanks is a list of segments: plain strings (visible text) and `Blank`s (a number
of tokens to generate). Three ways to make one:

    parse_template("The cat [[4]] on the mat.")      inline syntax: [[N]] = a blank of N tokens
    blank_char_spans(text, [(8, 11)], count_tokens)  character ranges (a selection in the browser)
    blank_random_sentence / blank_fraction_of_words  one-click helpers, seeded by an rng

and `encode_segments(tokenizer, segments, bos_id)` turns it into (input_ids, blank_mask, layout)
for `model.decode`. The rules, in one place:

- `[[N]]` takes a whole number 1 <= N <= MAX_BLANK_TOKENS (spaces inside the brackets are
  allowed). `[[?]]` lets the model choose the blank's length in UNKNOWN_RANGE, `[[a-b]]` in
  a..b (1 <= a <= b <= MAX_CHOSEN_TOKENS); at most one blank of a story has a chosen length.
  Anything else between `[[` and `]]` is refused with a message. There is no escape: a literal
  `[[...]]` cannot be written.
- The space before a blank belongs to the blank: "The cat [[1]] on" encodes "The cat" and asks
  the blank for " sat" (the tokenizer's word tokens carry their leading space). Selections and
  helpers count tokens the same way, leading space included.
- Control characters (Unicode Cc and Cf, e.g. NUL, escape, zero-width and bidi overrides) are
  stripped, except newline and tab; "\\r\\n" becomes "\\n". `clean_text` says how many went.
  Markup is ordinary text here: nothing in this file (or the app) interprets it.
- A request is refused when the text is empty, has no blank, has no visible text left (every
  token blank), or is longer than the model's context (`max_positions`, BOS included).
"""
from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

MAX_BLANK_TOKENS = 1024  # a parse-time sanity cap; the model's context is checked at encoding
UNKNOWN_RANGE = (1, 40)  # [[?]]: from one word to about two sentences
MAX_CHOSEN_TOKENS = 64  # the longest length a [[a-b]] blank may be tried at
BLANK_RE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
SENTENCE_END_RE = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")
ABBREVIATIONS = ("Mr", "Mrs", "Ms", "Dr", "St", "Col", "Capt", "Gen", "Lt", "Rev", "No", "vol", "etc")
WORD_RE = re.compile(r"\w[\w'\u2019-]*")


@dataclass(frozen=True)
class Blank:
    length: int  # tokens to generate (for a chosen length: the layout's first guess)
    original: str | None = field(default=None, compare=False)  # the text it replaced, when known
    choose: tuple[int, int] | None = None  # [[?]] / [[a-b]]: the model picks the length in [lo, hi]

    @property
    def marker(self) -> str:
        """How the blank is written in a template."""
        if self.choose is None:
            return f"[[{self.length}]]"
        return "[[?]]" if self.choose == UNKNOWN_RANGE else f"[[{self.choose[0]}-{self.choose[1]}]]"


Segment = Union[str, Blank]
CountTokens = Callable[[str], int]


# ----------------------------------------------------------------------------------------------
# text <-> segments

def clean_text(text: str) -> tuple[str, int]:
    """Strip control characters (keeping newline and tab); return (clean text, how many went)."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    kept = [c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs")]
    return "".join(kept), len(text) - len(kept)


def parse_template(text: str, max_blank: int = MAX_BLANK_TOKENS) -> list[Segment]:
    """Split text written with [[N]], [[?]] and [[a-b]] blanks into segments (control characters stripped)."""
    text, _ = clean_text(text)
    segments: list[Segment] = []
    last = 0
    for m in BLANK_RE.finditer(text):
        inner = m.group(1).strip()
        where = f"blank [[{m.group(1)}]] at character {m.start() + 1}"
        if m.start() > last:
            segments.append(text[last:m.start()])
        segments.append(_parse_blank(inner, where, max_blank))
        last = m.end()
    if last < len(text):
        segments.append(text[last:])
    if sum(isinstance(s, Blank) and s.choose is not None for s in segments) > 1:
        raise ValueError("only one blank can have a length the model chooses ([[?]] or [[a-b]]); give the others "
                         "a number of tokens, e.g. [[4]]")
    return segments


def _parse_blank(inner: str, where: str, max_blank: int) -> Blank:
    if inner == "?":
        lo, hi = UNKNOWN_RANGE
        return Blank(round((lo * hi) ** 0.5), choose=UNKNOWN_RANGE)
    rng = re.fullmatch(r"(\d*)\s*-\s*(\d*)", inner)
    if rng:
        if not rng.group(1) or not rng.group(2):
            raise ValueError(f"{where}: write a number of tokens, e.g. [[4]], or a range with both ends, "
                             "e.g. [[3-12]], or [[?]]")
        lo, hi = int(rng.group(1)), int(rng.group(2))
        if lo > hi:
            raise ValueError(f"{where}: the range is inverted; write the shorter length first, e.g. [[{hi}-{lo}]]")
        if lo < 1 or hi > MAX_CHOSEN_TOKENS:
            raise ValueError(f"{where}: a chosen length must lie between 1 and {MAX_CHOSEN_TOKENS} tokens; "
                             f"narrow the range or write a fixed length [[N]]")
        return Blank(round((lo * hi) ** 0.5), choose=(lo, hi))
    if not re.fullmatch(r"[+]?\d+", inner):
        raise ValueError(f"{where}: write the number of tokens to generate, e.g. [[4]], or [[?]] to let the "
                         "model choose, or a range such as [[3-12]]")
    n = int(inner)
    if not 1 <= n <= max_blank:
        raise ValueError(f"{where}: a blank holds 1 to {max_blank} tokens; got {n}")
    return Blank(n)


def format_template(segments: Sequence[Segment]) -> str:
    """The inverse of parse_template: segments -> text with [[N]] ([[?]], [[a-b]]) blanks."""
    return "".join(s.marker if isinstance(s, Blank) else s for s in segments)


def blanks_of(segments: Sequence[Segment]) -> list[Blank]:
    return [s for s in segments if isinstance(s, Blank)]


def merge_text(segments: Sequence[Segment]) -> list[Segment]:
    """Join adjacent strings and drop empty ones (blanks stay as they are)."""
    out: list[Segment] = []
    for s in segments:
        if isinstance(s, str):
            if not s:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += s
                continue
        out.append(s)
    return out


# ----------------------------------------------------------------------------------------------
# making blanks

def blank_char_spans(text: str, spans: Sequence[tuple[int, int]], count_tokens: CountTokens,
                     lengths: Sequence[int | None] | None = None) -> list[Segment]:
    """Blank character ranges [start, end) of plain text (whitespace at either end of a range
    stays visible). A blank's length is the number of tokens of the text it replaces, with the
    space before it (which the blank owns), or lengths[i] when given."""
    lengths = list(lengths) if lengths is not None else [None] * len(spans)
    if len(lengths) != len(spans):
        raise ValueError(f"got {len(spans)} spans but {len(lengths)} lengths; give one length per span")
    out: list[Segment] = []
    last = 0
    for (start, end), n in sorted(zip(spans, lengths), key=lambda x: x[0][0]):
        if not 0 <= start < end <= len(text):
            raise ValueError(f"span ({start}, {end}) is not inside the text (0..{len(text)}); select some text")
        if start < last:
            raise ValueError(f"span ({start}, {end}) overlaps the previous one; select separate spans")
        sel = text[start:end]
        if not sel.strip():
            raise ValueError("the selection is only whitespace; select a word or more")
        start, end = start + len(sel) - len(sel.lstrip()), end - (len(sel) - len(sel.rstrip()))
        lead = " " if start > last and text[start - 1] == " " else ""
        n = count_tokens(lead + text[start:end]) if n is None else int(n)
        if n < 1:
            raise ValueError(f"a blank holds at least 1 token; got {n}")
        out += [text[last:start], Blank(n, text[start:end])]
        last = end
    out.append(text[last:])
    return merge_text(out)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges of the sentences of plain text (ends at . ! ? and closing quotes;
    "Mr." and the like do not end one)."""
    spans, start = [], 0
    for m in SENTENCE_END_RE.finditer(text):
        word = re.search(r"(\w+)$", text[start:m.start()])
        if m.group(0) == "." and word and word.group(1) in ABBREVIATIONS:
            continue
        if re.match(r"\s+[a-z]", text[m.end():]):  # '"Oh!" said she.' is one sentence
            continue
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(text)))
    # trim the whitespace around each sentence; drop empty ones
    out = []
    for a, b in spans:
        seg = text[a:b]
        a2, b2 = a + len(seg) - len(seg.lstrip()), b - (len(seg) - len(seg.rstrip()))
        if a2 < b2:
            out.append((a2, b2))
    return out


def blank_random_sentence(segments: Sequence[Segment], rng: random.Random,
                          count_tokens: CountTokens) -> list[Segment]:
    """Blank one sentence, drawn at random among the visible text's sentences."""
    found = [(i, a, b) for i, s in enumerate(segments) if isinstance(s, str)
             for a, b in sentence_spans(s) if WORD_RE.search(s[a:b])]
    if not found:
        raise ValueError("there is no visible sentence left to blank; write some text first")
    pick, start, end = rng.choice(found)
    out = list(segments[:pick]) + blank_char_spans(segments[pick], [(start, end)], count_tokens)
    return merge_text(out + list(segments[pick + 1:]))


def blank_fraction_of_words(segments: Sequence[Segment], frac: float, rng: random.Random,
                            count_tokens: CountTokens) -> list[Segment]:
    """Blank about `frac` of the visible words (at least one), drawn at random; neighbouring
    picks separated only by spaces become one blank."""
    if not 0 < frac < 1:
        raise ValueError(f"the fraction of words to blank must be between 0 and 1; got {frac}")
    words = [(i, m.start(), m.end()) for i, s in enumerate(segments) if isinstance(s, str)
             for m in WORD_RE.finditer(s)]
    if not words:
        raise ValueError("there are no visible words left to blank; write some text first")
    k = max(1, round(frac * len(words)))
    picked = sorted(rng.sample(words, k))
    by_seg: dict[int, list[tuple[int, int]]] = {}
    for i, a, b in picked:
        rs = by_seg.setdefault(i, [])
        if rs and not segments[i][rs[-1][1]:a].strip(" "):  # only spaces between: merge
            rs[-1] = (rs[-1][0], b)
        else:
            rs.append((a, b))
    out: list[Segment] = []
    for i, s in enumerate(segments):
        out += blank_char_spans(s, by_seg[i], count_tokens) if i in by_seg else [s]
    return merge_text(out)


# ----------------------------------------------------------------------------------------------
# segments <-> token ids

@dataclass
class Piece:
    """One run of the layout: visible text, or one blank, with its sequence positions."""
    kind: str  # "text" or "blank"
    text: str  # text: the visible text; blank: the space it owns ("" or " ")
    positions: list[int]
    original: str | None = None  # blank: the text it replaced, when known
    choose: tuple[int, int] | None = None  # blank: the length range the model chooses from


@dataclass
class Encoded:
    input_ids: list[int]  # BOS first; blank positions hold the mask (or pad) id
    blank_mask: list[bool]
    layout: list[Piece]

    @property
    def blank_spans(self) -> list[list[int]]:
        return [p.positions for p in self.layout if p.kind == "blank"]

    @property
    def chosen(self) -> tuple[int, tuple[int, int]] | None:
        """(blank index, (lo, hi)) of the blank whose length the model chooses, or None."""
        return next(((i, p.choose) for i, p in enumerate(q for q in self.layout if q.kind == "blank")
                     if p.choose is not None), None)


def encode_segments(tokenizer, segments: Sequence[Segment], bos_id: int,
                    max_positions: int | None = None) -> Encoded:
    """Tokenize segments into one BOS-first sequence; raise ValueError saying what to change."""
    segments = merge_text(segments)
    if not segments or all(isinstance(s, str) and not s.strip() for s in segments):
        raise ValueError("the text is empty: write a story or pick an example")
    if not any(isinstance(s, Blank) for s in segments):
        raise ValueError("there is no blank: select text in the editor and mark it, write [[N]] "
                         "in the text (a blank of N tokens), or use a 'blank' helper")
    if not any(isinstance(s, str) and s.strip() for s in segments):
        raise ValueError("everything is blank: keep some text visible for the model to condition on")
    n_blank = sum(s.length for s in segments if isinstance(s, Blank))
    if max_positions is not None and n_blank + 1 > max_positions:
        raise ValueError(f"the blanks hold {n_blank} tokens but the model's context is {max_positions} "
                         "tokens; make the blanks shorter")
    fill = getattr(tokenizer, "mask_token_id", None)
    fill = fill if fill is not None else (getattr(tokenizer, "pad_token_id", None) or bos_id)
    ids, mask, layout = [bos_id], [False], []
    for i, s in enumerate(segments):
        if isinstance(s, Blank):
            prev = segments[i - 1] if i > 0 else None
            lead = " " if isinstance(prev, str) and prev.endswith(" ") else ""
            layout.append(Piece("blank", lead, list(range(len(ids), len(ids) + s.length)), s.original, s.choose))
            ids += [fill] * s.length
            mask += [True] * s.length
            continue
        nxt = segments[i + 1] if i + 1 < len(segments) else None
        # the space before a blank is the blank's (see the module docstring): not encoded here
        text = s[:-1] if isinstance(nxt, Blank) and s.endswith(" ") else s
        toks = tokenizer.encode(text, add_special_tokens=False) if text else []
        if text:
            layout.append(Piece("text", text, list(range(len(ids), len(ids) + len(toks)))))
        ids += toks
        mask += [False] * len(toks)
    if max_positions is not None and len(ids) > max_positions:
        raise ValueError(f"the text and blanks come to {len(ids)} tokens (with the BOS) but the model's "
                         f"context is {max_positions}; shorten the text or the blanks")
    return Encoded(ids, mask, layout)


def token_counter(tokenizer) -> CountTokens:
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


# ----------------------------------------------------------------------------------------------
# custom orders over blanks

def parse_custom_order(text: str, n_blanks: int) -> list[int]:
    """'2 1 3' (or '2,1,3'): one group number per blank, in text order -> [2, 1, 3]."""
    parts = [p for p in re.split(r"[\s,;]+", (text or "").strip()) if p]
    if not parts:
        raise ValueError(f"the custom order is empty: give one group number per blank ({n_blanks} "
                         f"blank{'s' if n_blanks != 1 else ''}), e.g. '{' '.join(str(n_blanks - i) for i in range(n_blanks))}'")
    bad = [p for p in parts if not re.fullmatch(r"\d+", p)]
    if bad:
        raise ValueError(f"the custom order must be whole numbers >= 1; {bad[0]!r} is not")
    stages = [int(p) for p in parts]
    if min(stages) < 1 or max(stages) > 10_000:
        raise ValueError("custom group numbers must be between 1 and 10000")
    if len(stages) != n_blanks:
        raise ValueError(f"the custom order has {len(stages)} group number(s) but the text has {n_blanks} "
                         f"blank(s); give exactly one per blank, in text order")
    return stages


def custom_groups(blank_spans: Sequence[Sequence[int]], stages: Sequence[int], group_size: int = 1
                  ) -> list[list[int]]:
    """Blank spans + a group number per blank -> groups of positions (DecodeConfig.custom_groups).

    Group numbers run in increasing order; blanks sharing a number are filled together, each
    `group_size` tokens per step, left to right inside a blank.
    """
    if len(stages) != len(blank_spans):
        raise ValueError(f"got {len(stages)} group numbers for {len(blank_spans)} blanks")
    if group_size < 1:
        raise ValueError(f"group size must be >= 1; got {group_size}")
    groups: list[list[int]] = []
    for stage in sorted(set(stages)):
        spans = [list(s) for s, g in zip(blank_spans, stages) if g == stage]
        for k in range(0, max(len(s) for s in spans), group_size):
            groups.append([p for s in spans for p in s[k:k + group_size]])
    return groups


__all__ = ["Blank", "Segment", "Piece", "Encoded", "MAX_BLANK_TOKENS", "MAX_CHOSEN_TOKENS", "UNKNOWN_RANGE", "clean_text", "parse_template",
           "format_template", "blanks_of", "merge_text", "blank_char_spans", "blank_random_sentence",
           "blank_fraction_of_words", "encode_segments", "token_counter", "parse_custom_order",
           "custom_groups"]
