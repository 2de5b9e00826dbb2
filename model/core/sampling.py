"""Token choice for decoding: which tokens a blank may receive, and greedy or sampled choice
with temperature / top-k / top-p, seeded.

    excluded_ids(tokenizer, vocab_size, config)   ids a blank never receives (special, added, control)
    Sampler(cfg).choose(logits)                   one token per target, from the run's seeded generator
    choose_rows(samplers, logits, counts)         the same for B rows at once (batched decoding)

The warpers are transformers' own (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper);
this file only validates the settings and draws from a seeded torch.Generator so that a run is
reproducible. Probabilities reported to the user are always the model's own (temperature 1,
no truncation, nothing excluded): they are what the likelihood is made of.
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

import torch
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)


@dataclass
class SamplingConfig:
    do_sample: bool = False  # False: greedy (argmax), seed-independent
    temperature: float = 1.0  # > 0 when sampling
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    seed: int = 0

    def validate(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2 ** 63:
            raise ValueError(f"seed must be a non-negative integer below 2**63; got {self.seed!r}")
        if not isinstance(self.temperature, (int, float)) or not math.isfinite(self.temperature):
            raise ValueError(f"temperature must be a finite number; got {self.temperature!r}")
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling (got {self.temperature}); "
                             "use greedy decoding for deterministic output")
        if self.do_sample and self.temperature > 100:
            raise ValueError(f"temperature {self.temperature} is too large; use a value in (0, 100]")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 turns it off); got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 turns it off); got {self.top_p!r}")

    def warpers(self) -> LogitsProcessorList:
        procs = LogitsProcessorList()
        if self.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(float(self.temperature)))
        if self.top_k > 0:
            procs.append(TopKLogitsWarper(self.top_k))
        if self.top_p < 1.0:
            procs.append(TopPLogitsWarper(float(self.top_p)))
        return procs


class Sampler:
    """Chooses one token per row of logits; owns the seeded generator of one run."""

    def __init__(self, cfg: SamplingConfig, device: torch.device | str = "cpu"):
        cfg.validate()
        self.cfg = cfg
        self.procs = cfg.warpers() if cfg.do_sample else None
        # the generator lives on the CPU so a seed gives the same draws on any device
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (M, V) fp32 -> chosen token ids (M,)."""
        return choose_rows([self], logits[None], [logits.shape[0]])[0]

    def uniform(self, n: int) -> torch.Tensor:
        """n uniform draws from the run's generator (for random scores and orders)."""
        return torch.rand(n, generator=self.gen)


def choose_rows(samplers: list[Sampler], logits: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
    """One token per target for B rows at once: logits (B, M, V), row b's first counts[b] targets.

    Rows with the same settings share one warp, softmax and CDF; each row then draws from its own
    generator exactly as it would alone (one uniform per target: inverse-CDF sampling, exact like
    torch.multinomial and ~10x cheaper; right=True never lands on a zero-probability id)."""
    out: list[torch.Tensor | None] = [None] * len(samplers)
    by_cfg: dict[tuple, list[int]] = {}
    for b, s in enumerate(samplers):
        c = s.cfg
        by_cfg.setdefault((c.do_sample, c.temperature, c.top_k, c.top_p) if c.do_sample else (False,), []).append(b)
    V = logits.shape[-1]
    for key, rows in by_cfg.items():
        if not key[0]:  # greedy: argmax, no randomness
            best = logits[rows].argmax(-1)
            for i, b in enumerate(rows):
                out[b] = best[i, :counts[b]]
            continue
        warped = samplers[rows[0]].procs(None, logits[rows].reshape(-1, V))
        cdf = torch.softmax(warped, dim=-1).cumsum(-1).view(len(rows), -1, V).cpu()  # (R, M, V)
        for i, b in enumerate(rows):
            c = cdf[i, :counts[b]]
            u = torch.rand(counts[b], 1, generator=samplers[b].gen) * c[:, -1:]
            out[b] = torch.searchsorted(c, u, right=True).clamp_(max=V - 1).squeeze(-1).to(logits.device)
    return out


_EXCLUDED: dict[tuple[int, int], torch.Tensor] = {}  # (id(tokenizer), vocab size) -> ids, computed once


def _control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in text)


def excluded_ids(tokenizer, vocab_size: int, config=None) -> torch.Tensor:
    """(K,) sorted token ids a blank must never receive.

    With a tokenizer: every id it calls special (BOS, EOS, pad, mask, unk), every added token (chat
    markers such as <|im_start|>), every id whose text contains a control or format character
    (newline and tab included: a blank is a span of running text), and the ids past the
    tokenizer's vocabulary that the embedding matrix pads with. Without one: the model config's
    BOS, EOS and pad ids."""
    if tokenizer is None:
        ids = {getattr(config, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        return torch.tensor(sorted(i for i in ids if isinstance(i, int) and 0 <= i < vocab_size), dtype=torch.long)
    key = (id(tokenizer), vocab_size)
    if key not in _EXCLUDED:
        ids = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        n = min(len(tokenizer), vocab_size)
        texts = tokenizer.batch_decode([[i] for i in range(n)])
        ids |= {i for i, t in enumerate(texts) if _control(t)}
        ids |= set(range(n, vocab_size))
        _EXCLUDED[key] = torch.tensor(sorted(i for i in ids if 0 <= i < vocab_size), dtype=torch.long)
    return _EXCLUDED[key]
