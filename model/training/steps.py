"""The pieces of one training step and of the loop's bookkeeping (model/train.py runs them):
what a stage's sampler spec means, a batch of groupings, the loss, held-out evaluation and the
atomic `out/last` checkpoint a restart resumes from."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator

from model.core.a3 import A3Model
from model.core.groups import make_sampler
from model.backbones.lora import is_adapter, save_adapter


def stage_kind(spec: str) -> str:
    """What a stage trains: "base" (causal LM), "diffusion" (DiffusionLM) or "a3"."""
    if spec == "base":
        return "base"
    return "diffusion" if spec.partition(":")[0] == "diffusion" else "a3"


def anneal_ratio(spec: str, step: int) -> float:
    """Attention openness of a diffusion stage at `step`: "diffusion:N" grows linearly from causal
    (0) to full (1) over N steps (DiffuGPT's annealing); plain "diffusion" is full from the start."""
    arg = spec.partition(":")[2]
    if arg and not arg.isdigit():
        raise ValueError(f"diffusion stage spec must be 'diffusion' or 'diffusion:N' (N annealing steps); got {spec!r}")
    n = int(arg or 0)
    return 1.0 if n == 0 else min(1.0, step / n)


def grouping_batch(sampler, rows: int, seq_len: int, rng: random.Random) -> torch.Tensor:
    """(rows, seq_len) group ids, one grouping per sequence; position 0 (BOS) gets 0 (ignored)."""
    g = torch.zeros(rows, seq_len, dtype=torch.long)
    for r in range(rows):
        g[r, 1:] = sampler(seq_len - 1, rng)
    return g


def stage_loss(model, ids: torch.Tensor, g: torch.Tensor | None, score_first: bool = True) -> torch.Tensor:
    """Mean NLL of one batch: a causal LM (g None, HF shifts) or A3 under groupings g (B, T).

    score_first=False leaves out each sequence's first group, whose tokens are predicted from the
    BOS alone: the loss is then the conditional -log p(x_rest | x_first group) per scored token,
    which for the block-context infilling pattern is the infilling likelihood itself."""
    if g is None:
        return model(input_ids=ids, labels=ids).loss
    labels = A3Model.default_labels(ids)
    if not score_first:
        first = g[:, 1:].min(dim=1, keepdim=True).values  # (B, 1) the group decoded first
        labels[g == first] = -100
    return model(ids, g, labels=labels).loss


@torch.no_grad()
def evaluate(model, eval_ids: torch.Tensor, sampler_spec: str, batch: int, seed: int,
             score_first: bool = True) -> dict:
    """Held-out NLL per token under the stage's grouping and loss (fixed seed) and, for A3, the
    full left-to-right NLL."""
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


def save_state(acc: Accelerator, model, opt, out: Path, stage_idx: int, step: int, tokens: int,
               elapsed: float, rng: random.Random, tokenizer, is_a3: bool, diffusion: bool = False) -> None:
    """Write out/last atomically: weights, optimizer, position in the recipe, RNG."""
    if not acc.is_main_process:
        return
    tmp = out / "last.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    net = acc.unwrap_model(model)
    if is_adapter(net):
        save_adapter(net, tmp, tokenizer=tokenizer)
    else:
        net.save_pretrained(tmp, tokenizer=tokenizer) if is_a3 or diffusion else net.save_pretrained(tmp)
    # at a stage boundary the next stage starts a fresh optimizer, so none is kept
    torch.save({"optimizer": None if step == 0 else opt.state_dict(), "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
    prog = {"stage": stage_idx, "step": step, "tokens": tokens, "elapsed": elapsed, "a3": is_a3}
    if diffusion:  # only diffusion runs carry the key: A3 runs keep their format
        prog["diffusion"] = True
    (tmp / "progress.json").write_text(json.dumps(prog))
    shutil.rmtree(out / "last", ignore_errors=True)
    tmp.rename(out / "last")
