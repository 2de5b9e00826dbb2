"""Cached group-wise decoding as a generator of step events (docs/DESIGN.md, "Decoding: one walk per step, with a cache").

    for step in decode(model, input_ids, blank_mask, DecodeConfig(...), tokenizer): ...

input_ids is one BOS-first sequence; blank_mask marks the positions to generate (their ids are
ignored). Strategies:
- fixed groupings (Algorithm 1): left_to_right, right_to_left, random, outside_in, custom, each
  cut into groups of `group_size` (see groups.fixed_order);
- dynamic (Algorithm 2): confidence (max prob), margin (top1 - top2), entropy (-H), dynamic_random;
  every pending blank is scored each step and the best `group_size` are committed, or, with a
  `threshold`, every blank whose max probability reaches it (at least one per step).

One step is one walk through the layers (two_stream_walk): the tokens committed last step are
appended to the K/V cache as a new group, and in the same walk the next targets' queries attend
to everything committed. The visible text is encoded once, in the first walk, with the context
grouping (groups.group_ids_from_order). use_cache=False recomputes both streams over the whole
sequence every step instead (the reference code's cost; the oracle in tests and the benchmark).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from .groups import BOS_GROUP, FIXED_ORDERS, fixed_order, group_ids_from_order
from .sampling import Sampler, SamplingConfig
from .trace import Trace, apply_steps
from .two_stream import KVCache, two_stream_walk

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
    return ids, mask


def _text(tokenizer, ids: list[int]) -> list[str]:
    if tokenizer is None:
        return [f"<{i}>" for i in ids]
    return [tokenizer.decode([i]) for i in ids]


def _scores(strategy: str, probs: torch.Tensor, logp: torch.Tensor, sampler: Sampler) -> torch.Tensor:
    """(M,) how ready each pending blank is; higher is committed first (Algorithm 2)."""
    if strategy == "confidence":
        return probs.max(-1).values
    if strategy == "margin":
        top2 = probs.topk(2, dim=-1).values
        return top2[:, 0] - top2[:, 1]
    if strategy == "entropy":
        return (probs * logp).sum(-1)  # -H
    return sampler.uniform(probs.shape[0]).to(probs.device)


@torch.no_grad()
def decode(model, input_ids, blank_mask, cfg: DecodeConfig | None = None,
           tokenizer=None) -> Iterator[Step]:
    """Fill the blanks of one sequence group by group, yielding a Step per group committed."""
    cfg = cfg or DecodeConfig()
    ids, mask = validate(input_ids, blank_mask, cfg, getattr(model.config, "max_position_embeddings", None))
    t0 = time.perf_counter()
    dev = model.device
    ids = ids.to(dev)
    T = ids.numel()
    blanks = mask.nonzero().flatten().tolist()
    visible = (~mask).nonzero().flatten().tolist()
    sampler = Sampler(cfg.sampling, dev)
    dynamic = cfg.strategy in DYNAMIC_ORDERS
    plan = None if dynamic else fixed_order(cfg.strategy, blanks, cfg.group_size, cfg.sampling.seed,
                                            cfg.custom_groups)
    # context grouping: BOS_GROUP, then group ids for visible tokens; blank groups follow
    ctx_g = group_ids_from_order(T, visible, [blanks], cfg.context).to(dev)
    next_group = int(ctx_g[mask].max())  # the first blank group's id
    open_ = mask.to(dev).clone()  # (T,) blanks not yet committed
    plan_t = None if dynamic else [torch.tensor(grp, device=dev) for grp in plan]
    g = ctx_g.clone()  # (T,) full grouping so far; blanks hold next_group until committed
    cache = KVCache.empty(model.base, 1, T, dev, model.w.dtype) if cfg.use_cache else None
    new_rows = torch.tensor(visible, device=dev)  # content rows to append in the next walk
    passes, step = 0, 0
    while bool(open_.any()):
        tgt = open_.nonzero().flatten() if dynamic else plan_t[step]  # (M,) target positions
        if cache is not None:
            q_states, _ = two_stream_walk(
                model.base, model.embed(ids[new_rows])[None], new_rows[None], g[new_rows][None],
                torch.ones(1, new_rows.numel(), dtype=torch.bool, device=dev),
                model.query_input(1, tgt.numel()), tgt[None],
                torch.full((1, tgt.numel()), next_group, device=dev), cache=cache)
            logits = model.head(q_states)[0]  # (M, V)
        else:
            # full recompute: every position, both streams; later blanks sit in a later group
            g_full = g.clone()
            g_full[open_] = next_group + 1
            g_full[tgt] = next_group
            logits = model(ids[None], g_full[None]).logits[0, tgt]
        passes += 1
        logp = torch.log_softmax(logits, dim=-1)
        probs = logp.exp()
        chosen = sampler.choose(logits)  # (M,)
        if dynamic:
            scores = _scores(cfg.strategy, probs, logp, sampler)
            if cfg.threshold is not None:
                keep = probs.max(-1).values >= cfg.threshold
                if not bool(keep.any()):  # at least one per step: the best-scored blank, only then
                    keep[scores.argmax()] = True
                sel = keep.nonzero().flatten()
            else:
                sel = scores.topk(min(cfg.group_size, tgt.numel())).indices
            sel = sel.sort().values
        else:
            sel = torch.arange(tgt.numel(), device=dev)
        pos = tgt[sel]
        tok = chosen[sel]
        ids[pos] = tok
        g[pos] = next_group
        open_[pos] = False
        new_rows, next_group = pos, next_group + 1
        p_sel, lp_sel = probs[sel], logp[sel]
        n_alt = min(cfg.n_alternatives, p_sel.shape[-1])
        top = p_sel.topk(n_alt, dim=-1) if n_alt else None
        tok_l = tok.tolist()
        yield Step(
            index=step, positions=pos.tolist(), token_ids=tok_l, tokens=_text(tokenizer, tok_l),
            probs=p_sel.gather(-1, tok[:, None]).squeeze(-1).tolist(),
            alternatives=[] if top is None else [
                list(zip(_text(tokenizer, i), v)) for i, v in zip(top.indices.tolist(), top.values.tolist())],
            entropy=(-(p_sel * lp_sel).nan_to_num().sum(-1)).tolist(),
            forward_passes=passes, elapsed=time.perf_counter() - t0, pending=int(open_.sum()))
        step += 1


def run(model, input_ids, blank_mask, cfg: DecodeConfig | None = None, tokenizer=None,
        spans: list[list[int]] | None = None) -> Trace:
    """Decode to the end and return the Trace (spans: each blank's positions, when blanks touch)."""
    cfg = cfg or DecodeConfig()
    ids = torch.as_tensor(input_ids, dtype=torch.long).flatten().tolist()
    mask = torch.as_tensor(blank_mask, dtype=torch.bool).flatten().tolist()
    return Trace(ids, mask, list(decode(model, input_ids, blank_mask, cfg, tokenizer)), cfg.context, spans)


__all__ = ["DecodeConfig", "Step", "Trace", "apply_steps", "decode", "run", "validate", "STRATEGIES", "DYNAMIC_ORDERS",
           "FIXED_ORDERS", "BOS_GROUP"]
