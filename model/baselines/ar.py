"""The left-to-right baseline: the AR base itself, reading the left context only.

    generate_exactly(base, prompt, n)   greedy `generate` of exactly n new tokens, and its forward passes
    left_logprobs(base, ids)            (B, T) log p(x_t | x_<t) of a causal LM, 0 at position 0

Used by the infilling evaluation (the "ar" system), the speed benchmark (base `generate`), the
likelihood metrics and the candidate scores: one definition of "the base, left to right".
"""
from __future__ import annotations

import torch
from transformers import GenerationConfig


class _CountCalls:
    """Counts forward calls of a module (one per forward pass through the decoder)."""

    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, *_):
        self.n += 1


@torch.no_grad()
def generate_exactly(base, prompt: torch.Tensor, n: int) -> tuple[list[int], int]:
    """Greedy HF `generate` from prompt (T,) BOS-first: exactly n new tokens (EOS cannot stop it
    early: min_new_tokens = max_new_tokens = n). Returns (new ids, forward passes)."""
    cfg = base.config
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    prompt = prompt.to(base.device).view(1, -1)
    gcfg = GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True,
                            eos_token_id=None, pad_token_id=pad, bos_token_id=int(prompt[0, 0]))
    counter = _CountCalls(base.model)
    try:
        out = base.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=gcfg)
    finally:
        counter.handle.remove()
    return out[0, prompt.shape[1]:].tolist(), counter.n


@torch.no_grad()
def left_logprobs(base, ids: torch.Tensor) -> torch.Tensor:
    """(B, T) log p(x_t | x_<t) from the causal LM; 0 at position 0 (the BOS is never predicted)."""
    ids = ids if ids.dim() == 2 else ids[None]
    logits = base(input_ids=ids.to(base.device)).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None].to(logits.device)).squeeze(-1)
    return torch.cat([torch.zeros_like(lp[:, :1]), lp], dim=1)
