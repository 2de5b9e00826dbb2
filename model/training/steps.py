"""The pieces of one training step: the rows of a batch, their groupings, and the loss.

    TrainData(cfg, tokenizer)                 packed rows of every corpus of the recipe; .batch(rng, n)
    grouping_batch(sampler, rows, T, rng)     (rows, T) group ids, one grouping per sequence
    stage_loss(model, ids, g, score_first)    mean NLL of a causal LM (g None) or of A3 under g
    anchor_kl(model, ids, a3_logits)          KL(base || A3) per token on a left-to-right batch

The loop (loop.py) calls them; nothing here saves or logs.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from model.backbones.lora import adapters_disabled
from model.core.a3 import A3Model
from model.corpus.austen import load_packed

from .slack_rows import fill_ends


class TrainData:
    """Training rows of the recipe's corpora, drawn by their shares; held-out rows of each."""

    def __init__(self, corpora: dict[str, float], seq_len: int, tokenizer, eval_rows: int):
        self.names = list(corpora)
        self.shares = [corpora[n] for n in self.names]
        self.train = [load_packed(d, "train", seq_len, tokenizer) for d in self.names]
        # (eval_rows * corpora, seq_len): the first eval_rows held-out rows of every corpus
        self.eval = torch.cat([load_packed(d, "eval", seq_len, tokenizer)[:eval_rows] for d in self.names])

    def batch(self, rng: random.Random, n: int) -> torch.Tensor:
        """(n, seq_len) rows; a single corpus draws exactly as the one-corpus trainer always did."""
        if len(self.train) == 1:
            rows = self.train[0]
            return rows[torch.tensor([rng.randrange(len(rows)) for _ in range(n)])]
        picks = rng.choices(range(len(self.train)), weights=self.shares, k=n)
        return torch.stack([self.train[c][rng.randrange(len(self.train[c]))] for c in picks])


def grouping_batch(sampler, rows: int, seq_len: int, rng: random.Random,
                   boundaries: torch.Tensor | None = None) -> torch.Tensor:
    """(rows, seq_len) group ids, one grouping per sequence; position 0 (BOS) gets 0 (ignored).

    boundaries: (rows, seq_len) True where a clause or sentence starts (the token after a
    punctuation token), for samplers that cut blanks along them (`wants_boundaries`)."""
    g = torch.zeros(rows, seq_len, dtype=torch.long)
    snap = getattr(sampler, "wants_boundaries", False) and boundaries is not None
    for r in range(rows):
        g[r, 1:] = sampler(seq_len - 1, rng, boundaries[r, 1:]) if snap else sampler(seq_len - 1, rng)
    return g


def clause_starts(ids: torch.Tensor, punct: torch.Tensor) -> torch.Tensor:
    """(B, T) True at tokens that follow a token ending in punctuation (punct: (V,) bool)."""
    out = torch.zeros_like(ids, dtype=torch.bool)
    out[:, 1:] = punct[ids[:, :-1]]
    return out


def punctuation_ids(tokenizer) -> torch.Tensor:
    """(V,) True for tokens whose text ends a clause or a sentence (. , ; : ! ? and closing quotes)."""
    vocab = tokenizer.get_vocab()
    punct = torch.zeros(max(len(tokenizer), max(vocab.values()) + 1), dtype=torch.bool)
    for tok, i in vocab.items():
        text = tokenizer.convert_tokens_to_string([tok]).strip()
        punct[i] = bool(text) and text[-1] in ".,;:!?\"'\u201d"
    return punct


def blank_tails(g: torch.Tensor, tail: int = 2) -> torch.Tensor:
    """(B, T) True at the last `tail` positions of every blank span: maximal runs of positions
    outside each row's first group (the visible block of the infilling patterns)."""
    first = g[:, 1:].min(dim=1, keepdim=True).values
    blank = g != first
    blank[:, 0] = False
    # i is among its span's last `tail` iff some position of i+1 .. i+tail is not blank
    ahead = torch.ones_like(blank)
    for j in range(1, tail + 1):
        shifted = torch.zeros_like(blank)  # past the row's end counts as not blank
        shifted[:, :-j] = blank[:, j:]
        ahead &= shifted
    return blank & ~ahead


def stage_loss(model, ids: torch.Tensor, g: torch.Tensor | None, score_first: bool = True,
               return_logits: bool = False, tail_weight: float = 1.0, end_weight: float = 1.0,
               empty_id: int | None = None, slack_mask: torch.Tensor | None = None):
    """Mean NLL of one batch: a causal LM (g None, HF shifts) or A3 under groupings g (B, T).

    score_first=False leaves out each sequence's first group, whose tokens are predicted from the
    BOS alone: the loss is then the conditional -log p(x_rest | x_first group) per scored token,
    which for the block-context infilling pattern is the infilling likelihood itself. The query
    stream then runs only at the scored positions (A3Model.scored_positions): the same loss for
    the cost of the content stream plus a few query rows.
    tail_weight: the loss weight of the last two tokens of every blank span (blank_tails), the
    others weigh 1; the loss is the weighted mean.
    end_weight: the loss weight of each slack blank's first empty slot (slack_rows.fill_ends of
    empty_id), where the fill ends: one token of the row carries the whole length decision.
    slack_mask: (B, T) the slack blanks' slots, whose queries get the slack marker (a3.slack_marker).
    return_logits: (loss, A3 logits (B, T, V)) for the anchor."""
    if g is None:
        return model(input_ids=ids, labels=ids).loss
    labels = A3Model.default_labels(ids)
    if not score_first:
        first = g[:, 1:].min(dim=1, keepdim=True).values  # (B, 1) the group decoded first
        labels[g == first] = -100
    if return_logits:
        out = model(ids, g, labels=labels, slack_mask=slack_mask)
        return out.loss, out.logits
    qpos = A3Model.scored_positions(labels) if not score_first else None
    if tail_weight == 1.0 and (end_weight == 1.0 or empty_id is None):
        return model(ids, g, labels=labels, query_positions=qpos, slack_mask=slack_mask).loss
    weights = 1.0 + (tail_weight - 1.0) * blank_tails(g).float()  # (B, T)
    if empty_id is not None:
        weights = weights + (end_weight - 1.0) * fill_ends(ids, empty_id).float()
    logits = model(ids, g, query_positions=qpos, slack_mask=slack_mask).logits  # (B, M, V)
    if qpos is not None:
        labels, weights = labels.gather(1, qpos), weights.gather(1, qpos)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                          reduction="none")  # (B*M,)
    w = weights.reshape(-1) * (labels.reshape(-1) != -100)
    return (nll * w).sum() / w.sum().clamp(min=1e-9)


def anchor_kl(model, ids: torch.Tensor, a3_logits: torch.Tensor) -> torch.Tensor:
    """Mean over predicted tokens of KL(p_base || p_A3), for a batch scored left to right.

    p_base(x_i | x_<i) is the base's own next-token distribution: the same network with its LoRA
    adapter disabled (no second model in memory), read at position i-1; A3's logit at position i
    predicts token i under singleton groups left to right (the query stream sees x_<i)."""
    net = getattr(model, "module", model)  # unwrap DistributedDataParallel
    with torch.no_grad(), adapters_disabled(net):
        base_logits = net.base(input_ids=ids).logits.float()  # (B, T, V)
    log_p = F.log_softmax(base_logits[:, :-1], dim=-1)  # predicts tokens 1..T-1
    log_q = F.log_softmax(a3_logits[:, 1:].float(), dim=-1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="sum") / log_q[..., 0].numel()
