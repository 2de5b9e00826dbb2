"""What a decoding run is asked for and what it reports: DecodeConfig (an order, a group size,
sampling), Step (the event of one step) and `validate` (every check of a request, with a message
that says what to change). decode.py runs them; the app, the evaluation and the tests build and
read them. Nothing here touches a model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .groups import FIXED_ORDERS
from .sampling import SamplingConfig

DYNAMIC_ORDERS = ("confidence", "margin", "entropy", "dynamic_random")
STRATEGIES = FIXED_ORDERS + DYNAMIC_ORDERS


@dataclass
class DecodeConfig:
    strategy: str = "left_to_right"  # one of STRATEGIES
    group_size: int = 1  # fixed: tokens per group; dynamic: k tokens committed per step
    threshold: float | None = None  # dynamic only: commit every blank with max prob >= threshold
    custom_groups: list[list[int]] | None = None  # strategy "custom": groups of blank positions
    context: str = "block"  # context grouping: "block" (visible text = group 0) or "causal"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    n_alternatives: int = 5  # top-k alternatives recorded per generated token
    use_cache: bool = True  # False: full two-stream recompute every step (benchmark / oracle)
    exclude_special: bool = True  # blanks never receive special, added or control tokens
    # (first slot, slots, least length): one blank whose length the model chooses with its learned
    # length signal; the fill ends at the first slot given the model's empty token (chosen_length.py)
    slack: tuple[int, int, int] | None = None


@dataclass
class Step:
    """What one decoding step did. Lists run over the positions committed this step."""
    index: int  # 0-based step number
    positions: list[int]  # sequence positions committed (BOS is position 0)
    token_ids: list[int]
    tokens: list[str]  # each token's text
    probs: list[float]  # model probability p(x_i | earlier groups) of each chosen token
    alternatives: list[list[tuple[str, float]]]  # top n_alternatives (text, prob) per position
    entropy: list[float]  # entropy (nats) of each position's distribution
    forward_passes: int  # walks through the layers so far
    elapsed: float  # seconds since decoding started
    pending: int  # blanks still open after this step
    excluded_mass: list[float] = field(default_factory=list)  # model probability on excluded ids, per position
    closed: list[int] = field(default_factory=list)  # slots closed with the empty token after the fill ended
    empty_prob: list[float] = field(default_factory=list)  # a slack blank: p(empty token) per position


def validate(input_ids: Sequence[int] | torch.Tensor, blank_mask: Sequence[bool] | torch.Tensor,
             cfg: DecodeConfig, max_positions: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Check one decoding request; return (ids (T,), mask (T,)) or raise ValueError saying what to change."""
    # clone: as_tensor/flatten may return the caller's tensor, and decoding writes into ids
    ids = torch.as_tensor(input_ids, dtype=torch.long).flatten().clone()
    mask = torch.as_tensor(blank_mask, dtype=torch.bool).flatten()
    if ids.numel() <= 1:
        raise ValueError("the text is empty: give some text (the sequence must hold more than the BOS)")
    if mask.shape != ids.shape:
        raise ValueError(f"blank_mask has {mask.numel()} entries but the text has {ids.numel()} tokens; give one per token")
    if bool(mask[0]):
        raise ValueError("position 0 is the BOS and cannot be a blank")
    if not bool(mask.any()):
        raise ValueError("there is no blank: mark at least one span to generate")
    if max_positions is not None and ids.numel() > max_positions:
        raise ValueError(f"the text is {ids.numel()} tokens long but the model handles at most {max_positions}; shorten it")
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {cfg.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if not isinstance(cfg.group_size, int) or cfg.group_size < 1:
        raise ValueError(f"group size / k must be an integer >= 1; got {cfg.group_size!r}")
    if cfg.threshold is not None:
        if cfg.strategy not in DYNAMIC_ORDERS:
            raise ValueError("a probability threshold applies to dynamic strategies only; pick confidence, margin, entropy or dynamic_random")
        if not 0 < cfg.threshold <= 1:
            raise ValueError(f"threshold must be a probability in (0, 1]; got {cfg.threshold}")
    if cfg.context not in ("block", "causal"):
        raise ValueError(f"context grouping must be 'block' or 'causal'; got {cfg.context!r}")
    if cfg.n_alternatives < 0:
        raise ValueError(f"n_alternatives must be >= 0; got {cfg.n_alternatives}")
    cfg.sampling.validate()
    if cfg.slack is not None:
        first, n, least = cfg.slack
        if not 1 <= least <= n or first < 1 or first + n > ids.numel() or not bool(mask[first:first + n].all()):
            raise ValueError(f"the slots of a blank whose length the model chooses ({first}..{first + n - 1}) "
                             f"must all be blank positions of the text, with a least length of 1 to {n}")
    return ids, mask
