"""The infilling task: held-out five-sentence windows with the middle sentence blanked, and the
systems that fill them (the protocol is in model/evaluation/infilling.py's docstring).

    make_windows(paragraphs, tokenizer, n, seed)   the kept windows, shuffled with seed, the first n
    Window                                         one window: sentences, ids with the blank, reference
    EvalSystem, all_systems, select_systems        the evaluated systems and --systems patterns

Shared by the run (infilling.py), its report (infilling_report.py) and the candidate study.
"""
from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass

from model.core.decode import DYNAMIC_ORDERS
from model.core.groups import FIXED_ORDERS
from model.core.infill import sentence_spans

# the evaluated A3 orders (the core's names): every fixed and dynamic order but a user's own and
# the dynamic random one (the fixed "random" order is evaluated); and the group sizes
STRATEGIES = tuple(s for s in FIXED_ORDERS + DYNAMIC_ORDERS if s not in ("custom", "dynamic_random"))
GROUP_SIZES = (1, 2, 4)


# ----------------------------------------------------------------------------------------------
# windows


@dataclass
class Window:
    index: int  # position in the shuffled list (the record key)
    paragraph: int  # line of eval.txt
    sentence: int  # first sentence of the window in its paragraph
    sentences: list[str]  # the five sentences; [2] is blanked
    input_ids: list[int]  # BOS + tokens; blank positions hold the tokenizer's mask id
    blank: list[int]  # positions of the middle sentence
    reference_ids: list[int]  # its true tokens

    @property
    def reference(self) -> str:
        return self.sentences[2]

    def blank_mask(self) -> list[bool]:
        blank = set(self.blank)
        return [i in blank for i in range(len(self.input_ids))]

    def reference_sequence(self) -> list[int]:
        """input_ids with the original sentence in the blank."""
        ids = list(self.input_ids)
        for p, t in zip(self.blank, self.reference_ids):
            ids[p] = t
        return ids


def split_sentences(paragraph: str) -> list[str]:
    return [paragraph[a:b] for a, b in sentence_spans(paragraph)]


def make_windows(paragraphs: list[str], tokenizer, n: int | None = None, seed: int = 0,
                 max_len: int = 256, blank_len: tuple[int, int] = (5, 64)) -> list[Window]:
    """All kept five-sentence windows (module docstring), shuffled with `seed`; the first n."""
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    fill = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.pad_token_id
    out = []
    for pi, para in enumerate(paragraphs):
        sents = split_sentences(para)
        for si in range(len(sents) - 4):
            s = sents[si:si + 5]
            left, mid, right = enc(" ".join(s[:2])), enc(" " + s[2]), enc(" " + " ".join(s[3:]))
            T = 1 + len(left) + len(mid) + len(right)
            if T > max_len or not blank_len[0] <= len(mid) <= blank_len[1]:
                continue
            start = 1 + len(left)
            ids = [tokenizer.bos_token_id] + left + [fill] * len(mid) + right
            out.append(Window(-1, pi, si, s, ids, list(range(start, start + len(mid))), mid))
    random.Random(seed).shuffle(out)
    out = out[:n] if n else out
    for i, w in enumerate(out):
        w.index = i
    return out


# ----------------------------------------------------------------------------------------------
# systems


@dataclass(frozen=True)
class EvalSystem:
    key: str
    family: str  # "a3" | "diffusion" | "ar"
    strategy: str = ""  # A3 only
    k: int = 1  # A3: group size / tokens per step; diffusion: steps = ceil(L / k)


def all_systems() -> list[EvalSystem]:
    a3 = [EvalSystem(f"a3-{s}-{k}", "a3", s, k) for s in STRATEGIES for k in GROUP_SIZES]
    return a3 + [EvalSystem(f"diffusion-{k}", "diffusion", "confidence", k) for k in GROUP_SIZES] + [EvalSystem("ar", "ar")]


def select_systems(patterns: str) -> list[EvalSystem]:
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [s for s in all_systems() if any(fnmatch.fnmatch(s.key, p) for p in pats)]
    if not chosen:
        keys = ", ".join(s.key for s in all_systems())
        raise SystemExit(f"error: --systems {patterns!r} matches no system; keys are: {keys}")
    return chosen
