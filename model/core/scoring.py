"""Scoring filled blanks: the one function that turns a grouping into blank log-probabilities.

    score_blanks(model, ids, blank_mask)                   one blank token at a time, left to right
    score_blanks(model, ids, blank_mask, groups=[[..]..])  the groups a run took (Trace.groups())
    score_fills(model, [(ids, blank_mask), ...])           what candidate fills are ranked by (FillScores)
    score_fills(model, rows, right=False)                  the same without the text after the blank
    score_fills(model, rows, right=False, both=False)      fill_left only (what the shipped rule reads)
    blanks_logp(model, [(ids, blank_mask), ...])           each filled row's exact log p(blanks | visible text)
    scored_by_its_run(cfg, trace)                          when a run's own log-likelihood is that number

The visible text is the context (group 0 with the default "block" context grouping, as decoding
encodes it); the blank tokens follow in `groups`. With singleton groups the sum is the exact
log p(blanks | visible text); otherwise the group-factorized likelihood (docs/DESIGN.md, "The
factorization"). The app's left-to-right score, the evaluation's reference NLL and the metrics'
infilling NLL all call this function. Rows that are candidates of one story (`by_layout`: the same
blank layout and visible text) are scored together, their shared part encoded once
(`shared_logprobs`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from .groups import group_ids_from_order


@torch.no_grad()
def score_blanks(model, input_ids, blank_mask, groups: Sequence[Sequence[int]] | None = None,
                 context: str = "block") -> torch.Tensor:
    """log p of every blank token, in position order: (L,) for ids (T,), (B, L) for ids (B, T).

    All rows share blank_mask (T,) and the grouping. groups: lists of blank positions in
    generation order (default: each blank alone, left to right), covering every blank once.
    """
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    single = ids.dim() == 1
    ids = ids[None] if single else ids
    mask = torch.as_tensor(blank_mask, dtype=torch.bool).flatten()
    if mask.numel() != ids.shape[1]:
        raise ValueError(f"blank_mask has {mask.numel()} entries for {ids.shape[1]} tokens; give one per token")
    blanks = mask.nonzero().flatten().tolist()
    if not blanks:
        raise ValueError("there is no blank to score")
    groups = [[p] for p in blanks] if groups is None else groups
    visible = (~mask).nonzero().flatten().tolist()
    g = group_ids_from_order(ids.shape[1], visible, groups, context)  # (T,)
    dev = model.device
    pos = torch.tensor(blanks, device=dev).expand(ids.shape[0], -1)  # (B, L): the query rows needed
    out = model.token_logprobs(ids.to(dev), g.expand_as(ids).to(dev), positions=pos)  # (B, L)
    return out[0] if single else out


@dataclass
class FillScores:
    """The log-likelihoods a candidate fill is ranked by (nats; higher is more likely).

    story      log p(whole sequence), left to right, exact
    fill_left  log p(fill | left text), its share of `story`
    right      log p(text right of the first blank | left text, fill), left to right, exact: the
               same tokens at every fill length, so comparable across lengths
    both       log p(fill | text on both sides), A3's visible-block context, fill left to right, exact
    n_fill     tokens in the fill
    story and right are None when scored with right=False (they need the walk over every token
    after the blank, most of the scoring's work on a CPU); both is None when scored with
    both=False (blanks_logp computes it later for the one fill that is shown).
    """
    story: float | None
    fill_left: float
    right: float | None
    both: float | None
    n_fill: int


def by_layout(rows: Sequence[tuple]) -> Iterator[tuple[torch.Tensor, list[int], torch.Tensor]]:
    """Rows [(ids (T,), blank_mask (T,)), ...] grouped by blank layout and visible text (the
    candidates of one story), each group stacked: yields (blank_mask (T,) bool, the rows' indices,
    ids (R, T)); a group's rows differ in their blanks only."""
    groups: dict[tuple, list[int]] = {}
    for i, (ids, mask) in enumerate(rows):
        m = torch.as_tensor(mask, dtype=torch.bool)
        key = (tuple(m.tolist()), tuple(torch.as_tensor(ids, dtype=torch.long)[~m].tolist()))
        groups.setdefault(key, []).append(i)
    for (key, _), idx in groups.items():
        yield torch.tensor(key), idx, torch.stack([torch.as_tensor(rows[i][0], dtype=torch.long) for i in idx])


def shared_logprobs(model, ids: torch.Tensor, groups: torch.Tensor, shared: int, queries: torch.Tensor,
                    context_queries: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p of rows that agree on their first `shared` positions (in `groups` order), under one grouping.

    ids (R, T): the rows; groups (T,): one grouping for all of them with every position of
    `order[:shared]` (order = positions by group) below every other; queries (M,): the positions
    whose log-probabilities are wanted, each outside the shared part; context_queries: positions
    inside it (the same in every row, scored once). The shared part's content states are
    computed once for all rows (one walk of one row) and copied into every row's cache, like
    decoding's shared context; a second walk adds each row's own positions and asks the
    queries. Equal to token_logprobs under `groups` (tested), at the cost of the rows' own part.
    Returns ((R, M) log p at `queries`, (K,) log p at `context_queries` or None)."""
    from .two_stream import KVCache, two_stream_walk
    dev, base = model.device, model.base
    R, T = ids.shape
    g = groups.clone()
    g[0] = -1  # the BOS: seen by every row, predicted by none (groups.BOS_GROUP)
    order = torch.argsort(g, stable=True)
    ctx, own = order[:shared], order[shared:]  # (S,), (T - S,) positions
    ids, g = ids.to(dev), g.to(dev)
    cache = KVCache.empty(base, 1, T, dev, model.w.dtype)
    cq = context_queries if context_queries is not None and len(context_queries) else ctx[:1]
    cq = cq.to(dev)
    c_states, _ = two_stream_walk(base, model.embed(ids[:1, ctx]), ctx[None].to(dev), g[ctx][None],
                                  torch.ones(1, shared, dtype=torch.bool, device=dev),
                                  model.query_input(1, len(cq)), cq[None], g[cq][None].clamp(min=0), cache=cache)
    ctx_lp = None
    if context_queries is not None and len(context_queries):
        lp = torch.log_softmax(model.head(c_states)[0], -1)  # (K, V)
        ctx_lp = lp.gather(1, ids[0, cq][:, None])[:, 0].cpu()
    cache = cache.expand(torch.zeros(R, dtype=torch.long, device=dev), T)
    own_d, q = own.to(dev), queries.to(dev)
    q_states, _ = two_stream_walk(base, model.embed(ids[:, own_d]), own_d.expand(R, -1), g[own_d].expand(R, -1),
                                  torch.ones(R, len(own), dtype=torch.bool, device=dev),
                                  model.query_input(R, len(q)), q.expand(R, -1), g[q].expand(R, -1), cache=cache)
    lp = torch.log_softmax(model.head(q_states), -1)  # (R, M, V)
    return lp.gather(2, ids[:, q][..., None])[..., 0].cpu(), ctx_lp


def scored_by_its_run(cfg, trace) -> bool:
    """True when a run's own log-likelihood is blanks_logp's number: one blank token a step, left
    to right in position order, the visible text as one block (score_blanks' default grouping).
    Each step records the model's own probability of the token it wrote (before any sampling
    warper or exclusion), so the run's sum is that exact log p and no second forward is needed."""
    return (cfg.strategy == "left_to_right" and cfg.group_size == 1 and cfg.context == "block"
            and getattr(cfg, "slack", None) is None and trace.exact)


@torch.no_grad()
def blanks_logp(model, rows: Sequence[tuple]) -> list[float]:
    """log p(blanks | visible text) of filled rows [(ids (T,), blank_mask (T,)), ...]: score_blanks'
    default grouping (one blank token at a time, left to right), exact, on the same scale for every
    order a row was decoded in."""
    out = [0.0] * len(rows)
    for mask, idx, ids in by_layout(rows):  # the visible text encoded once per story (shared_logprobs)
        blanks = mask.nonzero().flatten()
        g = group_ids_from_order(ids.shape[1], (~mask).nonzero().flatten().tolist(), [[p] for p in blanks.tolist()])
        lp = shared_logprobs(model, ids, g, ids.shape[1] - len(blanks), blanks)[0].sum(-1)  # (R,)
        for i, v in zip(idx, lp.tolist()):
            out[i] = v
    return out


@torch.no_grad()
def score_fills(model, rows: Sequence[tuple], right: bool = True, both: bool = True) -> list[FillScores]:
    """FillScores of filled sequences [(ids (T,), blank_mask (T,)), ...]. The candidates of one story
    share everything before the first blank (left to right) and all their visible text (both
    sides): each shared part is encoded once (shared_logprobs), then two walks score every row's
    own part, left to right from the first blank on, and its blanks given both sides.
    right=False: the left-to-right walk stops at the last blank (story and right are None): the
    fill's log p given its left text needs no token after it, so that walk covers the blanks
    instead of the rest of the story, and the text before the blank is not scored (only `story`
    reads it). both=False: no both-sides walk (both is None). A rule that reads neither ranks the
    same (candidates.needs_right / needs_both)."""
    out: list[FillScores | None] = [None] * len(rows)
    for mask, idx, ids in by_layout(rows):  # ids (R, T)
        T = ids.shape[1]
        blanks = mask.nonzero().flatten()
        first, end = int(blanks[0]), (T if right else int(blanks[-1]) + 1)
        after = torch.arange(first, end)  # the left-to-right walk's queries: the rows' own positions
        l2r, prefix = shared_logprobs(model, ids[:, :end], torch.arange(end), first, after,
                                      torch.arange(1, first) if right else None)  # (R, end - first)
        if both:
            g_both = group_ids_from_order(T, (~mask).nonzero().flatten().tolist(), [[p] for p in blanks.tolist()])
            both_lp = shared_logprobs(model, ids, g_both, T - len(blanks), blanks)[0].sum(-1).tolist()  # (R,)
        before = float(prefix.sum()) if prefix is not None else 0.0  # log p of the text before the blank
        in_fill = mask[first:end]
        after_fill = ~in_fill & (after > first)
        for j, i in enumerate(idx):
            out[i] = FillScores(story=before + float(l2r[j].sum()) if right else None,
                                fill_left=float(l2r[j, in_fill].sum()),
                                right=float(l2r[j, after_fill].sum()) if right else None,
                                both=both_lp[j] if both else None, n_fill=int(mask.sum()))
    return out
