"""Held-out evaluation during training: the stage's own loss on fixed rows and groupings, and
for A3 also the full left-to-right NLL (the number that must stay close to the base's)."""
from __future__ import annotations

import random

import torch

from model.core.samplers import make_sampler

from .recipe import stage_kind
from .steps import grouping_batch, stage_loss


@torch.no_grad()
def held_out_nll(model, eval_ids: torch.Tensor, sampler_spec: str, batch: int, seed: int,
                 score_first: bool = True) -> dict:
    """Held-out NLL per token under the stage's grouping and loss (fixed seed) and, for A3, the
    full left-to-right NLL; a diffusion stage reports its ELBO bound."""
    model.eval()
    dev = next(model.parameters()).device
    out = {}
    if stage_kind(sampler_spec) == "diffusion":
        # MC ELBO bound per token (an upper bound on NLL), full attention, fixed masks
        gen, tot = torch.Generator().manual_seed(seed), 0.0
        for i in range(0, len(eval_ids), batch):
            ids = eval_ids[i:i + batch].to(dev)
            tot += model(ids, generator=gen).loss.item() * len(ids)
        model.train()
        return {"nll_bound": tot / len(eval_ids)}
    specs = [("nll", None)] if sampler_spec == "base" else [("nll", sampler_spec), ("nll_ar", "ar")]
    for key, spec in specs:
        rng, tot = random.Random(seed), 0.0
        for i in range(0, len(eval_ids), batch):
            ids = eval_ids[i:i + batch].to(dev)
            g = None if spec is None else grouping_batch(make_sampler(spec), len(ids), ids.shape[1], rng).to(dev)
            tot += stage_loss(model, ids, g, score_first or spec == "ar").item() * len(ids)
        out[key] = tot / len(eval_ids)
    model.train()
    return out
