"""The systems the speed benchmark (model/bench.py) compares on one backbone, and how each runs.

    A3 cached          model.decode with use_cache=True (what the app runs)
    A3 full recompute  the same decoding, both streams over every position each step
    base generate      the base model's own HF `generate` over the prefix
    diffusion          the base decoder run bidirectionally, k most confident blanks per step

Each runner returns (generated ids in blank order, steps, forward passes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from model.core.decode import DecodeConfig, decode


@dataclass(frozen=True)
class System:
    key: str  # short id, for --systems
    name: str  # table label
    kind: str  # "a3" | "generate" | "diffusion"
    k: int = 1  # A3: group size (fixed order) or tokens per step (dynamic); diffusion: tokens per step
    strategy: str = "left_to_right"  # A3 only
    use_cache: bool = True  # A3 only

    @property
    def slow(self) -> bool:
        """Recomputes the whole sequence every step."""
        return self.kind == "diffusion" or (self.kind == "a3" and not self.use_cache)


SYSTEMS = [
    System("cached-l2r-1", "A3 cached, left_to_right", "a3", 1),
    System("cached-l2r-4", "A3 cached, left_to_right", "a3", 4),
    System("cached-conf-1", "A3 cached, confidence", "a3", 1, "confidence"),
    System("cached-conf-4", "A3 cached, confidence", "a3", 4, "confidence"),
    System("full-l2r-1", "A3 full recompute, left_to_right", "a3", 1, use_cache=False),
    System("full-l2r-4", "A3 full recompute, left_to_right", "a3", 4, use_cache=False),
    System("full-conf-1", "A3 full recompute, confidence", "a3", 1, "confidence", use_cache=False),
    System("full-conf-4", "A3 full recompute, confidence", "a3", 4, "confidence", use_cache=False),
    System("generate", "base `generate` (prefix only)", "generate", 1),
    System("diffusion-1", "diffusion full recompute, confidence", "diffusion", 1),
    System("diffusion-4", "diffusion full recompute, confidence", "diffusion", 4),
]


# ----------------------------------------------------------------------------------------------
# the systems: each returns (generated ids in blank order, steps, forward passes)

def run_a3(model, ids, mask, system: System, max_steps: int | None = None):
    # everything else at DecodeConfig's defaults (greedy, block context, 5 alternatives per token):
    # the cost of exactly what the demo runs
    dcfg = DecodeConfig(strategy=system.strategy, group_size=system.k, use_cache=system.use_cache)
    out = ids.clone()
    steps = passes = 0
    for st in decode(model, ids, mask, dcfg):
        out[st.positions] = torch.tensor(st.token_ids)
        steps, passes = st.index + 1, st.forward_passes
        if max_steps is not None and steps >= max_steps:
            break
    return out[mask].tolist(), steps, passes


class _CountCalls:
    """Counts forward calls of a module (one per forward pass through the decoder)."""

    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, *_):
        self.n += 1


def run_generate(model, ids, mask):
    """The base model's own greedy `generate` over BOS + left context, exactly N new tokens."""
    from transformers import GenerationConfig
    base = model.base
    N = int(mask.sum())
    start = int(mask.nonzero()[0])
    prompt = ids[:start].to(model.device)[None]
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    # min_new_tokens = max_new_tokens = N: EOS is suppressed until N, then the length limit stops it
    gcfg = GenerationConfig(max_new_tokens=N, min_new_tokens=N, do_sample=False, use_cache=True,
                            eos_token_id=None, pad_token_id=pad, bos_token_id=int(ids[0]))
    counter = _CountCalls(base.model)
    try:
        out = base.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=gcfg)
    finally:
        counter.handle.remove()
    new = out[0, prompt.shape[1]:].tolist()
    return new, len(new), counter.n


def bidirectional_mask(model, T: int) -> torch.Tensor:
    """(1, 1, T, T) 'everyone sees everyone': transformers passes a 4D mask through unchanged
    (masking_utils._preprocess_mask_arguments); SDPA takes booleans, eager an additive float mask."""
    if model.config._attn_implementation == "sdpa":
        return torch.ones(1, 1, T, T, dtype=torch.bool, device=model.device)
    return torch.zeros(1, 1, T, T, dtype=model.w.dtype, device=model.device)


@torch.no_grad()
def run_diffusion(model, ids, mask, k: int, max_steps: int | None = None):
    """Masked-diffusion style: blanks hold a mask id; every step runs the base decoder without a
    causal mask over all T positions and commits the k most confident blanks (greedy)."""
    base, dev = model.base, model.device
    x = ids.clone().to(dev)
    pending = mask.clone().to(dev)
    x[pending] = model.config.vocab_size - 1  # the mask id
    T = x.numel()
    attn = bidirectional_mask(model, T)
    pos = torch.arange(T, device=dev)[None]
    steps = 0
    while bool(pending.any()) and (max_steps is None or steps < max_steps):
        h = base.model(input_ids=x[None], attention_mask=attn, position_ids=pos, use_cache=False).last_hidden_state[0]
        idx = pending.nonzero().flatten()
        probs = torch.softmax(base.lm_head(h[idx]).float(), dim=-1)  # logits at the blanks only
        conf, tok = probs.max(-1)
        sel = conf.topk(min(k, idx.numel())).indices
        x[idx[sel]] = tok[sel]
        pending[idx[sel]] = False
        steps += 1
    return x[mask.to(dev)].tolist(), steps, steps


def run_system(model, ids, mask, system: System, max_steps: int | None = None):
    """Run one system to the end (or for max_steps steps, a warm-up; `generate` always runs to the end)."""
    if system.kind == "a3":
        return run_a3(model, ids, mask, system, max_steps)
    if system.kind == "generate":
        return run_generate(model, ids, mask)
    if system.kind == "diffusion":
        return run_diffusion(model, ids, mask, system.k, max_steps)
    raise ValueError(f"unknown system kind {system.kind!r}")
