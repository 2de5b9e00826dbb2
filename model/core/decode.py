"""Cached group-wise decoding as a generator of step events (docs/DESIGN.md, "Decoding: one walk per step, with a cache").

    for step in decode(model, input_ids, blank_mask, DecodeConfig(...), tokenizer): ...
    traces = run_batch(model, [(ids, mask), ...], [cfg, ...], tokenizer)   # B rows, one walk per step

input_ids is one BOS-first sequence; blank_mask marks the positions to generate (their ids are
ignored). The request and event types (DecodeConfig, Step, validate) are decode_events.py's and
are re-exported here. Strategies:
- fixed groupings (Algorithm 1): left_to_right, right_to_left, random, outside_in, custom, each
  cut into groups of `group_size` (see groups.fixed_order);
- dynamic (Algorithm 2): confidence (max prob), margin (top1 - top2), entropy (-H), dynamic_random;
  every pending blank is scored each step and the best `group_size` are committed, or, with a
  `threshold`, every blank whose max probability reaches it (at least one per step).

One step is one walk through the layers (two_stream_walk): the tokens committed last step are
appended to the K/V cache as a new group, and in the same walk the next targets' queries attend
to everything committed. Several rows (candidates of one story: other seeds, orders, group sizes
or blank lengths) decode in one batch: each walk carries every row's new content rows and
targets, padded to the longest, with padding invisible as keys; each row keeps its own plan,
sampler and grouping, so it equals its own single-row decode. Blanks never receive a special,
added or control token (sampling.excluded_ids): those ids are removed before sampling and
before any dynamic score, while the probabilities reported stay the model's own and each step
records the mass the exclusion took. The visible text is encoded once, in the first walk, with the context
grouping (groups.group_ids_from_order). use_cache=False recomputes both streams over the whole
sequence every step instead (the reference code's cost; the oracle in tests and the benchmark).
"""
from __future__ import annotations

import time
from typing import Iterator, Sequence

import torch

from .chosen_length import SlackBlank, compact, length_signal
from .context_store import Entry, context_store
from .decode_events import DYNAMIC_ORDERS, STRATEGIES, DecodeConfig, Step, validate
from .groups import BOS_GROUP, FIXED_ORDERS, PAD_GROUP, fixed_order, group_ids_from_order
from .sampling import Sampler, choose_rows, excluded_ids
from .trace import Trace, apply_steps
from .two_stream import KVCache, padded, rowwise, two_stream_walk

_TEXTS: dict[int, dict[int, str]] = {}  # id(tokenizer) -> {token id: its text}, filled as tokens appear


def _text(tokenizer, ids: list[int]) -> list[str]:
    if tokenizer is None:
        return [f"<{i}>" for i in ids]
    known = _TEXTS.setdefault(id(tokenizer), {})
    return [known[i] if i in known else known.setdefault(i, tokenizer.decode([i])) for i in ids]


class _Row:
    """One sequence's decoding state: its request, plan, sampler, grouping and open blanks."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, cfg: DecodeConfig, dev, empty_id: int | None = None):
        self.cfg, self.T = cfg, ids.numel()
        self.slack = None if cfg.slack is None else SlackBlank(cfg.slack[0], cfg.slack[1], empty_id, cfg.slack[2])
        self.ids, self.mask = ids.to(dev), mask
        self.slots = torch.zeros(self.T, dtype=torch.bool, device=dev)  # (T,) a slack blank's slots
        if self.slack is not None:
            self.slots[self.slack.first:self.slack.first + self.slack.slots] = True
        self.blanks = mask.nonzero().flatten().tolist()
        self.visible = (~mask).nonzero().flatten().tolist()
        self.sampler = Sampler(cfg.sampling, dev)
        self.dynamic = cfg.strategy in DYNAMIC_ORDERS
        plan = None if self.dynamic else fixed_order(cfg.strategy, self.blanks, cfg.group_size, cfg.sampling.seed,
                                                     cfg.custom_groups)
        self.plan = None if plan is None else [torch.tensor(grp, device=dev) for grp in plan]
        # context grouping: BOS_GROUP, then group ids for visible tokens; blank groups follow
        self.g = group_ids_from_order(self.T, self.visible, [self.blanks], cfg.context).to(dev)  # (T,)
        self.next_group = int(self.g[mask].max())  # the first blank group's id
        self.open = mask.to(dev).clone()  # (T,) blanks not yet committed
        self.new_rows = torch.tensor(self.visible, device=dev)  # content rows to append in the next walk
        self.step = self.passes = self.k = 0  # k: the plan's next group (groups of closed slots are skipped)

    @property
    def active(self) -> bool:
        return bool(self.open.any())

    def context_key(self) -> tuple:
        """Rows with equal keys encode their visible text identically (shareable K/V)."""
        return tuple(self.visible), tuple(self.ids[self.visible].tolist()), self.cfg.context

    def targets(self) -> torch.Tensor:
        """(M,) the positions queried this step: every open blank (dynamic) or the plan's next group."""
        if self.dynamic:
            return self.open.nonzero().flatten()
        while not bool(self.open[self.plan[self.k]].any()):  # every slot of it closed: skip the group
            self.k += 1
        grp = self.plan[self.k]
        return grp[self.open[grp]]


def _pad(rows: list[torch.Tensor], fill: int, dev) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D tensors of different lengths: (B, L) values and (B, L) validity."""
    L = max(1, max(r.numel() for r in rows))
    out = torch.full((len(rows), L), fill, dtype=torch.long, device=dev)
    valid = torch.zeros(len(rows), L, dtype=torch.bool, device=dev)
    for b, r in enumerate(rows):
        out[b, :r.numel()] = r
        valid[b, :r.numel()] = True
    return out, valid


def _walk_cached(model, rows: list[_Row], news: list[torch.Tensor], tgts: list[torch.Tensor], cache: KVCache,
                 content_out: bool = False) -> torch.Tensor:
    """One walk: append each row's new content rows to the cache, query its targets. (B, M, V)."""
    dev = model.device
    h_pos, h_valid = _pad(news, 0, dev)  # (B, N)
    ids = torch.stack([r.ids[p] for r, p in zip(rows, h_pos)])  # (B, N), padding reads the BOS
    h_groups = torch.stack([r.g[p] for r, p in zip(rows, h_pos)]).masked_fill(~h_valid, PAD_GROUP)
    q_pos, q_valid = _pad(tgts, 0, dev)  # (B, M); padded query rows see the BOS and are never read
    q_groups = torch.tensor([r.next_group for r in rows], device=dev)[:, None].expand_as(q_pos)
    marked = (torch.stack([r.slots[p] for r, p in zip(rows, q_pos)])  # (B, M) queries at slack slots
              if any(r.slack is not None for r in rows) else None)
    q_states, _ = two_stream_walk(model.base, model.embed(ids), h_pos, h_groups, h_valid,
                                  model.query_input(len(rows), q_pos.shape[1], marked), q_pos, q_groups, cache=cache,
                                  content_out=content_out, q_valid=q_valid)
    if padded(q_valid):  # the LM head on the real query rows only
        return rowwise(model.head, q_states, q_valid.flatten().nonzero().flatten())
    return model.head(q_states)


def _shared_context(model, rows: list[_Row], slots: int, known: dict | None = None) -> KVCache:
    """Encode each distinct visible text once (one walk), then give every row a copy of its K/V:
    candidates of one story share their context instead of encoding it B times. With a context
    store (context_store.py), texts it holds are not encoded at all, and new ones are kept;
    `known`: entries already looked up, by key."""
    keys = [r.context_key() for r in rows]
    uniq = list(dict.fromkeys(keys))
    store = context_store(model)
    entries = dict(known or {})
    entries.update({k: store.get(k) for k in uniq if k not in entries} if store is not None else {})
    todo = [k for k in uniq if entries.get(k) is None]
    if todo:
        reps = [rows[keys.index(k)] for k in todo]
        enc = KVCache.empty(model.base, len(reps), max(len(r.visible) for r in reps), model.device, model.w.dtype)
        bos = [r.new_rows[:1] for r in reps]  # one harmless query per row; its logits are not read
        _walk_cached(model, reps, [r.new_rows for r in reps], bos, enc)
        for i, (k, r) in enumerate(zip(todo, reps)):
            entries[k] = Entry.of(enc, i, len(r.visible))
            if store is not None:
                store.put(k, entries[k])
    for r, k in zip(rows, keys):  # a row counts the walk that encoded its text, if one did
        r.new_rows, r.passes = r.new_rows[:0], int(k in todo)
    cache = KVCache.empty(model.base, len(rows), slots, model.device, model.w.dtype)
    for k in uniq:  # each text's K/V into the slots of the rows that share it
        at = torch.tensor([b for b, x in enumerate(keys) if x == k], device=model.device)
        e = entries[k]
        for dst, src in zip(cache.k + cache.v, e.k + e.v):
            dst[at, :, :e.length] = src
        cache.groups[at, :e.length], cache.valid[at, :e.length] = e.groups, e.valid
    cache.length = max(e.length for e in entries.values())
    return cache


def _walk_full(model, rows: list[_Row], tgts: list[torch.Tensor]) -> torch.Tensor:
    """Full recompute: every position of every row, both streams (the oracle). (B, M, V)."""
    dev = model.device
    Tm = max(r.T for r in rows)
    ids = torch.zeros(len(rows), Tm, dtype=torch.long, device=dev)
    g = torch.zeros_like(ids)
    real = torch.zeros_like(ids, dtype=torch.bool)
    slots = torch.zeros_like(real)
    for b, (r, tgt) in enumerate(zip(rows, tgts)):
        g_full = r.g.clone()
        g_full[r.open] = r.next_group + 1  # blanks not queried now sit in a later group
        g_full[tgt] = r.next_group
        ids[b, :r.T], g[b, :r.T], real[b, :r.T], slots[b, :r.T] = r.ids, g_full, True, r.slots
    logits = model(ids, g, attention_mask=real, slack_mask=slots).logits  # (B, Tm, V)
    q_pos, _ = _pad(tgts, 0, dev)
    return logits.gather(1, q_pos[..., None].expand(-1, -1, logits.shape[-1]))


def _commit_all(rows: list[_Row], tgts: list[torch.Tensor], logits: torch.Tensor, excl: torch.Tensor,
                tokenizer, t0: float) -> list[Step | None]:
    """Choose and commit this walk's tokens, row by row (logits (B, M, V) at each row's targets,
    padding rows ignored; its excluded ids are set to -inf in place). What is read only somewhere
    is computed only there: the choice over every target, for the whole batch at once; the
    distribution a dynamic order ranks by, for its rows (`_scores`: a confidence order needs the
    top probability, not the whole distribution); the model's own distribution, with the entropy
    and alternatives, at the positions committed (a confidence order queries every open blank and
    commits one: vocabulary-wide passes over all of them cost more than its walk)."""
    exclude = torch.tensor([r.cfg.exclude_special for r in rows], device=logits.device)
    raw_excl = logits[:, :, excl].clone() if excl.numel() else None  # (B, M, E) the model's own logits there
    if excl.numel():
        logits[:, :, excl] = torch.where(exclude[:, None, None], float("-inf"), raw_excl)
    for b, (r, tgt) in enumerate(zip(rows, tgts)):  # a slack blank: the empty token where a fill may end
        if r.slack is not None and tgt.numel():
            ok = torch.isin(tgt, torch.tensor(list(r.slack.positions), device=tgt.device))
            ok[ok.clone()] = r.slack.allowed(r.open, r.ids)[tgt[ok] - r.slack.first]
            e, n = r.slack.empty_id, tgt.numel()
            raw_e = raw_excl[b, :n, int((excl == e).nonzero()[0])]
            logits[b, :n, e] = torch.where(ok, raw_e, logits[b, :n, e])
    counts = [t.numel() for t in tgts]
    chosen_rows = choose_rows([r.sampler for r in rows], logits, counts)  # what may be chosen
    out: list[Step | None] = []
    for b, (r, tgt) in enumerate(zip(rows, tgts)):
        M = tgt.numel()
        if M == 0:
            out.append(None)
            continue
        cfg = r.cfg
        chosen = chosen_rows[b]  # (M,)
        if r.dynamic:  # what may be chosen and scored: the distribution without the excluded ids
            scores, top_p = _scores(cfg.strategy, logits[b, :M], r.sampler)
            if cfg.threshold is not None:
                keep = top_p >= cfg.threshold
                if not bool(keep.any()):  # at least one per step: the best-scored blank, only then
                    keep[scores.argmax()] = True
                sel = keep.nonzero().flatten()
            else:
                sel = scores.topk(min(cfg.group_size, M)).indices.sort().values
        else:
            sel = torch.arange(M, device=tgt.device)
        closed = []
        if r.slack is not None:  # a fill that ends: later slots close, chosen in this step or not
            closed = r.slack.closing(tgt[sel].tolist(), chosen[sel].tolist(), r.open)
            sel = sel[~torch.isin(tgt[sel], torch.tensor(closed, dtype=torch.long, device=tgt.device))]
            closed = sorted(closed)
        pos, tok = tgt[sel], chosen[sel]
        js, tok_l = sel.tolist(), tok.tolist()
        r.ids[pos] = tok
        shut = torch.tensor(closed, dtype=torch.long, device=pos.device)
        r.ids[shut] = r.slack.empty_id if closed else 0
        r.g[pos], r.g[shut] = r.next_group, r.next_group
        r.open[pos], r.open[shut] = False, False
        r.new_rows, r.next_group = torch.cat([pos, shut]), r.next_group + 1
        r.passes += 1
        r.k += 1
        own = logits[b, sel]  # (S, V) a copy at the committed positions, the model's own logits restored
        if raw_excl is not None:
            own[:, excl] = raw_excl[b, sel]
        lp_sel = torch.log_softmax(own, dim=-1)  # the model's own distributions, reported as they are
        p_sel = lp_sel.exp()
        excluded = (p_sel[:, excl].sum(-1) * exclude[b]).tolist() if excl.numel() else [0.0] * len(js)
        k = min(cfg.n_alternatives, logits.shape[-1])
        entropy = (-(p_sel * lp_sel).nan_to_num().sum(-1)).tolist()
        top = p_sel.topk(k, dim=-1) if k else None
        top_i, top_v = (top.indices.tolist(), top.values.tolist()) if top is not None else (None, None)
        at = torch.arange(len(js), device=p_sel.device)
        out.append(Step(
            index=r.step, positions=pos.tolist(), token_ids=tok_l, tokens=_text(tokenizer, tok_l),
            probs=p_sel[at, tok].tolist(),
            alternatives=[list(zip(_text(tokenizer, top_i[i]), top_v[i])) for i in range(len(js))] if k else [],
            entropy=entropy, forward_passes=r.passes, elapsed=time.perf_counter() - t0,
            pending=int(r.open.sum()), excluded_mass=excluded, closed=closed,
            empty_prob=p_sel[:, r.slack.empty_id].tolist() if r.slack is not None else []))
        r.step += 1
    return out


def _scores(strategy: str, masked: torch.Tensor, sampler: Sampler) -> tuple[torch.Tensor, torch.Tensor]:
    """(M,) how ready each pending blank is, higher committed first (Algorithm 2), and (M,) its top
    probability, from its logits without the excluded ids (M, V): the top probability is
    exp(max - logsumexp), and only the entropy order needs the whole distribution."""
    lse = torch.logsumexp(masked, dim=-1)  # (M,)
    if strategy == "margin":
        top2 = (masked.topk(2, dim=-1).values - lse[:, None]).exp()  # (M, 2)
        return top2[:, 0] - top2[:, 1], top2[:, 0]
    top_p = (masked.max(-1).values - lse).exp()
    if strategy == "confidence":
        return top_p, top_p
    if strategy == "entropy":
        logp = masked - lse[:, None]
        return (logp.exp() * logp).nan_to_num().sum(-1), top_p  # -H (excluded ids: 0 * -inf counts as 0)
    return sampler.uniform(masked.shape[0]).to(masked.device), top_p


@torch.no_grad()
def decode_batch(model, requests: Sequence[tuple], cfgs: Sequence[DecodeConfig] | DecodeConfig | None = None,
                 tokenizer=None) -> Iterator[list[Step | None]]:
    """Fill the blanks of B sequences together, one walk per step for all of them.

    requests: (input_ids, blank_mask) per row; cfgs: one DecodeConfig per row, or one for all.
    Yields, per walk, a list with each row's Step (None for rows already finished). With B > 1
    and the cache, a first walk encodes each distinct visible text once for the rows that share it
    (counted in every row's forward_passes)."""
    if not requests:
        raise ValueError("give at least one (input_ids, blank_mask) row to decode")
    cfgs = [cfgs or DecodeConfig()] * len(requests) if not isinstance(cfgs, (list, tuple)) else list(cfgs)
    if len(cfgs) != len(requests):
        raise ValueError(f"got {len(cfgs)} decode configs for {len(requests)} rows; give one per row or one for all")
    if len({c.use_cache for c in cfgs}) > 1:
        raise ValueError("rows of one batch must all use the cache or all recompute")
    max_pos = getattr(model.config, "max_position_embeddings", None)
    checked = [validate(ids, mask, cfg, max_pos) for (ids, mask), cfg in zip(requests, cfgs)]
    t0 = time.perf_counter()
    dev = model.device
    signal = length_signal(model)
    if any(c.slack is not None for c in cfgs) and not signal:
        raise ValueError("this model has not learned where a fill ends (no length signal in its checkpoint); "
                         "give the blank a length, or let the app try several lengths")
    rows = [_Row(ids, mask, cfg, dev, signal.get("empty_id")) for (ids, mask), cfg in zip(checked, cfgs)]
    excl = excluded_ids(tokenizer, model.config.vocab_size, model.config).to(dev)
    if signal:  # the empty token only ever goes where a slack blank may end
        excl = torch.unique(torch.cat([excl, torch.tensor([signal["empty_id"]], device=dev)]))
    cache = None
    if cfgs[0].use_cache:  # slots: the longest visible text and the most blanks of a row (the cache
        # grows when rows of different group sizes pad their walks past that: KVCache.reserve)
        slots = max(len(r.visible) for r in rows) + max(len(r.blanks) for r in rows)
        store = context_store(model)
        key = rows[0].context_key() if len(rows) == 1 and store is not None else None
        entry = None if key is None else store.get(key)
        # one row whose text is not stored: encoded in its first walk, with its first query (kept after it)
        one = len(rows) == 1 and entry is None
        keep = one and store is not None
        cache = (KVCache.empty(model.base, 1, slots, dev, model.w.dtype) if one
                 else _shared_context(model, rows, slots, {key: entry} if entry is not None else None))
    while any(r.active for r in rows):
        tgts = [r.targets() if r.active else r.new_rows[:0] for r in rows]
        if cache is not None:
            news = [r.new_rows if r.active else r.new_rows[:0] for r in rows]
            logits = _walk_cached(model, rows, news, tgts, cache)
            if keep:  # the first walk wrote the visible text's K/V into the first slots
                store.put(key, Entry.of(cache, 0, len(rows[0].visible)))
                keep = False
        else:
            logits = _walk_full(model, rows, tgts)
        yield _commit_all(rows, tgts, logits, excl, tokenizer, t0)


def decode(model, input_ids, blank_mask, cfg: DecodeConfig | None = None, tokenizer=None) -> Iterator[Step]:
    """Fill the blanks of one sequence group by group, yielding a Step per group committed."""
    for steps in decode_batch(model, [(input_ids, blank_mask)], [cfg or DecodeConfig()], tokenizer):
        yield steps[0]


def run(model, input_ids, blank_mask, cfg: DecodeConfig | None = None, tokenizer=None,
        spans: list[list[int]] | None = None) -> Trace:
    """Decode to the end and return the Trace (spans: each blank's positions, when blanks touch)."""
    return run_batch(model, [(input_ids, blank_mask)], [cfg or DecodeConfig()], tokenizer,
                     None if spans is None else [spans])[0]


def run_batch(model, requests: Sequence[tuple], cfgs: Sequence[DecodeConfig] | DecodeConfig | None = None,
              tokenizer=None, spans: Sequence[list[list[int]] | None] | None = None,
              compact_slack: bool = True) -> list[Trace]:
    """decode_batch to the end: one Trace per row (spans: each row's blank positions, or None).
    A row with a slack blank comes back as the story as filled (chosen_length.compact), unless
    compact_slack=False (the raw run, its slots and their closing, as an animation shows them)."""
    cfgs = [cfgs or DecodeConfig()] * len(requests) if not isinstance(cfgs, (list, tuple)) else list(cfgs)
    steps: list[list[Step]] = [[] for _ in requests]
    for walk in decode_batch(model, requests, cfgs, tokenizer):
        for b, s in enumerate(walk):
            if s is not None:
                steps[b].append(s)
    spans = spans or [None] * len(requests)
    out = []
    for (ids, mask), cfg, st, sp in zip(requests, cfgs, steps, spans):
        ids = torch.as_tensor(ids, dtype=torch.long).flatten().tolist()
        mask = torch.as_tensor(mask, dtype=torch.bool).flatten().tolist()
        trace = Trace(ids, mask, st, cfg.context, sp)
        out.append(trace if cfg.slack is None or not compact_slack else
                   compact(trace, SlackBlank(cfg.slack[0], cfg.slack[1], length_signal(model)["empty_id"])))
    return out


__all__ = ["DecodeConfig", "Step", "Trace", "apply_steps", "decode", "decode_batch", "run", "run_batch", "validate",
           "STRATEGIES", "DYNAMIC_ORDERS", "FIXED_ORDERS", "BOS_GROUP"]
