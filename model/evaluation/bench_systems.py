"""The systems the speed benchmark (model/bench.py) compares on one backbone, and how each runs.

    A3 cached          model.decode with use_cache=True (what the app runs)
    A3 full recompute  the same decoding, both streams over every position each step
    base generate      the base model's own HF `generate` over the prefix
    diffusion          the base decoder run bidirectionally (DiffusionLM's unmasking), k blanks per step
    candidates         8 sampled fills of the blank in one batched decode (the app's candidate view)

Each runner returns (generated ids in blank order, steps, forward passes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice

import torch

from model.baselines.ar import generate_exactly
from model.baselines.diffusion import DiffusionLM
from model.core.decode import DecodeConfig, decode, decode_batch
from model.core.sampling import SamplingConfig
from model.core.trace import apply_steps


@dataclass(frozen=True)
class BenchSystem:
    key: str  # short id, for --systems
    name: str  # table label
    kind: str  # "a3" | "generate" | "diffusion" | "candidates"
    k: int = 1  # A3: group size (fixed order) or tokens per step (dynamic); diffusion: tokens per step
    strategy: str = "left_to_right"  # A3 only
    use_cache: bool = True  # A3 only

    @property
    def slow(self) -> bool:
        """Recomputes the whole sequence every step."""
        return self.kind == "diffusion" or (self.kind == "a3" and not self.use_cache)


SYSTEMS = [
    BenchSystem("cached-l2r-1", "A3 cached, left_to_right", "a3", 1),
    BenchSystem("cached-l2r-4", "A3 cached, left_to_right", "a3", 4),
    BenchSystem("cached-conf-1", "A3 cached, confidence", "a3", 1, "confidence"),
    BenchSystem("cached-conf-4", "A3 cached, confidence", "a3", 4, "confidence"),
    BenchSystem("full-l2r-1", "A3 full recompute, left_to_right", "a3", 1, use_cache=False),
    BenchSystem("full-l2r-4", "A3 full recompute, left_to_right", "a3", 4, use_cache=False),
    BenchSystem("full-conf-1", "A3 full recompute, confidence", "a3", 1, "confidence", use_cache=False),
    BenchSystem("full-conf-4", "A3 full recompute, confidence", "a3", 4, "confidence", use_cache=False),
    BenchSystem("generate", "base `generate` (prefix only)", "generate", 1),
    BenchSystem("diffusion-1", "diffusion full recompute, confidence", "diffusion", 1),
    BenchSystem("diffusion-4", "diffusion full recompute, confidence", "diffusion", 4),
    BenchSystem("candidates-8", "A3 cached, 8 sampled candidates in one batch", "candidates", 1),
]
CANDIDATES = 8  # rows of the "candidates" system: one story, seeds 0..7, temperature 0.8


# ----------------------------------------------------------------------------------------------
# the systems: each returns (generated ids in blank order, steps, forward passes)

def run_a3(model, ids, mask, system: BenchSystem, max_steps: int | None = None):
    # everything else at DecodeConfig's defaults (greedy, block context, 5 alternatives per token):
    # the cost of exactly what the demo runs
    dcfg = DecodeConfig(strategy=system.strategy, group_size=system.k, use_cache=system.use_cache)
    steps = list(islice(decode(model, ids, mask, dcfg), max_steps))
    out = apply_steps(ids, steps)
    return [out[p] for p in mask.nonzero().flatten().tolist()], len(steps), steps[-1].forward_passes


def run_candidates(model, ids, mask, max_steps: int | None = None):
    """CANDIDATES sampled fills of the same blank in one batched decode (what the app's candidate
    view runs): the context is encoded once, then one walk per step for every row."""
    cfgs = [DecodeConfig(sampling=SamplingConfig(do_sample=True, temperature=0.8, seed=s)) for s in range(CANDIDATES)]
    walks = list(islice(decode_batch(model, [(ids, mask)] * CANDIDATES, cfgs), max_steps))
    out = apply_steps(ids, [w[0] for w in walks if w[0] is not None])
    return [out[p] for p in mask.nonzero().flatten().tolist()], len(walks), walks[-1][0].forward_passes


def run_generate(model, ids, mask):
    """The base model's own greedy `generate` over BOS + left context, exactly N new tokens."""
    start = int(mask.nonzero()[0])
    new, passes = generate_exactly(model.base, ids[:start], int(mask.sum()))
    return new, len(new), passes


def diffusion_view(model) -> DiffusionLM:
    """The A3 model's backbone run as a masked diffusion LM (the last vocabulary id as its mask)."""
    return DiffusionLM(model.base, mask_token_id=model.config.vocab_size - 1)


@torch.no_grad()
def run_diffusion(model, ids, mask, k: int, max_steps: int | None = None):
    """Masked-diffusion style (DiffusionLM.infill_steps): every step one full bidirectional forward
    over all T positions, committing the k most confident blanks (greedy). The backbone was never
    trained this way, so the tokens mean nothing: this is a cost baseline."""
    n = int(mask.sum())
    steps = list(islice(diffusion_view(model).infill_steps(ids, mask, steps=math.ceil(n / k)), max_steps))
    out = apply_steps(ids, steps)
    return [out[p] for p in mask.nonzero().flatten().tolist()], len(steps), len(steps)


def run_system(model, ids, mask, system: BenchSystem, max_steps: int | None = None):
    """Run one system to the end (or for max_steps steps, a warm-up; `generate` always runs to the end)."""
    if system.kind == "a3":
        return run_a3(model, ids, mask, system, max_steps)
    if system.kind == "generate":
        return run_generate(model, ids, mask)
    if system.kind == "diffusion":
        return run_diffusion(model, ids, mask, system.k, max_steps)
    if system.kind == "candidates":
        return run_candidates(model, ids, mask, max_steps)
    raise ValueError(f"unknown system kind {system.kind!r}")
