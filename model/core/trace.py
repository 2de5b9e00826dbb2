"""A run's result, owned by the library: the steps of one decoding and what follows from them.

    apply_steps(input_ids, steps)   the ids after committing every step (A3 and diffusion steps alike)
    Trace                           request + steps -> output ids, grouping, log-likelihood, fills

The app, the evaluation and the benchmark read a run through these two, so "the filled text",
"the grouping the run took" and "the run's own log-likelihood" have one definition each
(docs/DESIGN.md, "Decoding: one walk per step, with a cache"). Nothing here runs a model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from .groups import group_ids_from_order, spans_of


def _field(step: Any, name: str):
    """A step's field, whether the step is a dataclass (decode.Step) or its JSON dict."""
    return step[name] if isinstance(step, dict) else getattr(step, name)


def apply_steps(input_ids: Sequence[int] | torch.Tensor, steps: Iterable[Any]) -> list[int]:
    """The sequence after committing each step's `token_ids` at its `positions`, in order."""
    out = torch.as_tensor(input_ids).flatten().tolist()
    for s in steps:
        for p, t in zip(_field(s, "positions"), _field(s, "token_ids")):
            out[p] = t
    return out


@dataclass
class Trace:
    """A whole run: the request (BOS-first ids, blank mask), its steps, and the context grouping.

    spans: the positions of each blank, in text order (default: the maximal runs of the blank
    mask; give them when two blanks touch, as infill.Encoded.blank_spans does).
    """
    input_ids: list[int]
    blank_mask: list[bool]
    steps: list  # decode.Step (or its dict), in order
    context: str = "block"
    spans: list[list[int]] | None = None
    # a blank whose length the model chose (chosen_length.compact): slots, length, p_end, p_length
    chosen: dict | None = None

    @property
    def output_ids(self) -> list[int]:
        return apply_steps(self.input_ids, self.steps)

    @property
    def blank_spans(self) -> list[list[int]]:
        if self.spans is not None:
            return [list(s) for s in self.spans]
        return spans_of([i for i, b in enumerate(self.blank_mask) if b])

    @property
    def log_likelihood(self) -> float:
        """Sum of log p of the generated tokens under the grouping the run took (exact for
        singleton groups, group-factorized otherwise): the run's own score, no model call."""
        return sum(math.log(max(p, 1e-45)) for s in self.steps for p in _field(s, "probs"))

    @property
    def exact(self) -> bool:
        """True when every step committed one token, so log_likelihood is an exact likelihood."""
        return all(len(_field(s, "positions")) == 1 for s in self.steps)

    @property
    def forward_passes(self) -> int:
        return _field(self.steps[-1], "forward_passes") if self.steps else 0

    @property
    def seconds(self) -> float:
        return float(_field(self.steps[-1], "elapsed")) if self.steps else 0.0

    def groups(self) -> list[list[int]]:
        """The blank positions of each step, in generation order."""
        return [list(_field(s, "positions")) for s in self.steps]

    def group_ids(self, context: str | None = None) -> torch.Tensor:
        """(T,) the grouping this run realised: the context grouping, then one group per step."""
        visible = [i for i, b in enumerate(self.blank_mask) if not b]
        return group_ids_from_order(len(self.input_ids), visible, self.groups(), context or self.context)

    def fill_ids(self) -> list[list[int]]:
        """The generated ids of each blank, in text order."""
        out = self.output_ids
        return [[out[p] for p in span] for span in self.blank_spans]

    def fills(self, tokenizer) -> list[str]:
        """Each blank's tokens decoded together (the text a user reads in the blank)."""
        return [tokenizer.decode(ids) for ids in self.fill_ids()]
