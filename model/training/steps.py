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


def grouping_batch(sampler, rows: int, seq_len: int, rng: random.Random) -> torch.Tensor:
    """(rows, seq_len) group ids, one grouping per sequence; position 0 (BOS) gets 0 (ignored)."""
    g = torch.zeros(rows, seq_len, dtype=torch.long)
    for r in range(rows):
        g[r, 1:] = sampler(seq_len - 1, rng)
    return g


def stage_loss(model, ids: torch.Tensor, g: torch.Tensor | None, score_first: bool = True,
               return_logits: bool = False):
    """Mean NLL of one batch: a causal LM (g None, HF shifts) or A3 under groupings g (B, T).

    score_first=False leaves out each sequence's first group, whose tokens are predicted from the
    BOS alone: the loss is then the conditional -log p(x_rest | x_first group) per scored token,
    which for the block-context infilling pattern is the infilling likelihood itself.
    return_logits: (loss, A3 logits (B, T, V)) for the anchor."""
    if g is None:
        return model(input_ids=ids, labels=ids).loss
    labels = A3Model.default_labels(ids)
    if not score_first:
        first = g[:, 1:].min(dim=1, keepdim=True).values  # (B, 1) the group decoded first
        labels[g == first] = -100
    out = model(ids, g, labels=labels)
    return (out.loss, out.logits) if return_logits else out.loss


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
