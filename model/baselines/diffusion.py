"""Masked-diffusion baseline: the AR base adapted into a masked diffusion LM, DiffuGPT-style.

    DiffusionLM(base, mask_token_id)   the same LlamaForCausalLM modules, run bidirectionally
    forward(ids) -> loss               MDLM / DiffuGPT masked-token loss (below)
    elbo_nll(ids, blank_mask)          Monte-Carlo ELBO bound of -log p(blanks | the rest)
    infill(ids, blank_mask, steps)     confidence-ordered unmasking, `steps` full forwards
    from_base / save_pretrained / from_pretrained   checkpoints like A3Model's

This is the comparison system of the paper's Table 1 (DiffuGPT / DiffuLLaMA, arXiv 2410.17891),
in miniature. What differs from the base causal LM (nothing else does: no new parameters):

- Attention is bidirectional: the base decoder gets a 4D "everyone sees everyone" mask
  (transformers passes a 4D mask through unchanged). During training the mask can be annealed
  from causal to full (DiffuGPT's attention-mask annealing): `attn_ratio` r in [0, 1] opens each
  above-diagonal entry with probability r, shared by the batch; r = 1 is full attention.
- A mask token (`<mask>`, id 3 in the Austen tokenizer) replaces the tokens to predict.
- Shifted prediction, as DiffuGPT: the logit at position i-1 predicts token i, so the AR base's
  head is reused as it is. Position 0 holds the BOS, which is never masked nor predicted.

Loss (MDLM's continuous-time ELBO with the SUBS parameterisation; DiffuGPT's and LLaDA's code):
per sequence draw t ~ U(eps, 1), mask every real non-BOS token independently with probability t,
and take

    loss = sum over sequences b, masked positions i of  CE(x_i | x_t) / t_b
           -----------------------------------------------------------------
              number of real non-BOS tokens in the batch (masked or not)

Its expectation over t and the masks is the ELBO bound on NLL per token (nats), so the number is
comparable, as an upper bound, with the per-token NLL of the AR and A3 stages.

Axis legend: B batch, T positions, V vocabulary, C hidden size, L blank tokens, S samples.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForCausalLM

from model.core import checkpoint
from model.core.sampling import Sampler, SamplingConfig
from model.core.trace import apply_steps


@dataclass
class DiffusionConfig:
    """The `diffusion` section of a checkpoint's config.json."""
    version: int = 1
    mask_token_id: int = 3  # the tokenizer's <mask>
    eps: float = 1e-3  # t ~ U(eps, 1): the 1/t weight stays below 1/eps
    base_model: str = ""  # where the backbone came from, for the model card
    training: dict = field(default_factory=dict)  # recipe summary written by the trainer


@dataclass
class DiffusionOutput:
    loss: torch.Tensor  # the weighted masked-token loss above (scalar)
    noisy_ids: torch.Tensor  # (B, T) the input the model saw: masked positions hold the mask id
    masked: torch.Tensor  # (B, T) bool, the positions that carried loss
    t: torch.Tensor  # (B,) each sequence's masking rate


@dataclass
class DiffusionStep:
    """One unmasking step: the positions committed, their tokens and probabilities."""
    index: int
    positions: list[int]
    token_ids: list[int]
    probs: list[float]  # p of each chosen token at the step it was committed
    forward_passes: int  # full forwards so far (one per step)
    pending: int  # blanks still masked after this step


@dataclass
class DiffusionInfill:
    output_ids: list[int]  # the sequence with every blank filled
    steps: list[DiffusionStep]
    forward_passes: int
    seconds: float


class DiffusionLM(nn.Module):
    """A masked diffusion LM over a pretrained decoder `base` (LlamaForCausalLM & co.)."""

    def __init__(self, base: nn.Module, config: DiffusionConfig | None = None, mask_token_id: int | None = None):
        super().__init__()
        self.base = base
        self.diffusion_config = config or DiffusionConfig()
        if mask_token_id is not None:
            self.diffusion_config.mask_token_id = int(mask_token_id)
        V = base.config.vocab_size
        if not 0 <= self.mask_id < V:
            raise ValueError(f"mask token id {self.mask_id} is outside the vocabulary (0..{V - 1}); "
                             "pass the tokenizer's mask_token_id")
        if base.config._attn_implementation.startswith("flash"):
            raise ValueError("flash attention cannot take a 4D mask; load the base with attn_implementation='sdpa'")

    @property
    def config(self):
        return self.base.config

    @property
    def mask_id(self) -> int:
        return self.diffusion_config.mask_token_id

    @property
    def device(self) -> torch.device:
        return self.base.get_input_embeddings().weight.device

    # ------------------------------------------------------------------------------------------
    # the bidirectional forward

    def attention_bias(self, B: int, T: int, valid: torch.Tensor | None = None, attn_ratio: float = 1.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 1, T, T) 4D mask for the base decoder: full attention (attn_ratio 1), or causal plus
        each future key opened with probability attn_ratio (DiffuGPT's annealing; one draw per
        batch). valid: (B, T) False for padding keys. Bool for SDPA, additive float otherwise."""
        dev = self.device
        allowed = torch.ones(1, 1, T, T, dtype=torch.bool, device=dev)
        if attn_ratio < 1.0:
            causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
            opened = torch.rand(T, T, generator=generator) < attn_ratio  # CPU draw: same on any device
            allowed = (causal | opened.to(dev))[None, None]
        allowed = allowed.expand(B, 1, T, T)
        if valid is not None:
            allowed = allowed & valid.bool()[:, None, None, :]
            allowed = allowed | torch.eye(T, dtype=torch.bool, device=dev)  # no empty row (pads see themselves)
        if self.config._attn_implementation == "sdpa":
            return allowed
        dtype = self.base.get_input_embeddings().weight.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill(~allowed, torch.finfo(dtype).min)

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               attn_ratio: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, T, C) final-norm states of the base decoder without its causal mask."""
        B, T = input_ids.shape
        bias = self.attention_bias(B, T, attention_mask, attn_ratio, generator)
        pos = torch.arange(T, device=input_ids.device).expand(B, T)
        return self.base.model(input_ids=input_ids, attention_mask=bias, position_ids=pos,
                               use_cache=False).last_hidden_state

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (fp32) from final-norm states."""
        return self.base.lm_head(h).float()

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               attn_ratio: float = 1.0) -> torch.Tensor:
        """(B, T, V) shifted logits: row i predicts token i from the state at i-1 (row 0 repeats row 1's
        source and means nothing; the BOS is never predicted)."""
        lg = self.head(self.hidden(input_ids, attention_mask, attn_ratio))
        return torch.cat([lg[:, :1], lg[:, :-1]], dim=1)

    # ------------------------------------------------------------------------------------------
    # training

    def q_sample(self, input_ids: torch.Tensor, t: torch.Tensor, maskable: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward (noising) process: mask each maskable token with probability t of its row.
        Returns (noisy ids (B, T), masked (B, T) bool)."""
        u = torch.rand(input_ids.shape, generator=generator).to(input_ids.device)
        masked = (u < t[:, None].to(input_ids.device)) & maskable
        return input_ids.masked_fill(masked, self.mask_id), masked

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                t: torch.Tensor | None = None, attn_ratio: float = 1.0,
                generator: torch.Generator | None = None) -> DiffusionOutput:
        """The masked-diffusion loss of a BOS-first batch (module docstring).

        input_ids: (B, T); attention_mask: (B, T) 1 for real tokens (padding carries no loss and
        is invisible); t: (B,) masking rates (default: drawn from U(eps, 1)); generator: a CPU
        torch.Generator for t, the masks and the annealed attention (default: the global RNG).
        """
        B, T = input_ids.shape
        eps = self.diffusion_config.eps
        if t is None:
            t = (1 - eps) * torch.rand(B, generator=generator) + eps
        t = t.to(device=input_ids.device, dtype=torch.float32)
        maskable = torch.ones_like(input_ids, dtype=torch.bool)
        if attention_mask is not None:
            maskable &= attention_mask.bool()
        maskable[:, 0] = False  # the BOS stays: every row sees it, nothing predicts it
        noisy, masked = self.q_sample(input_ids, t, maskable, generator)
        h = self.hidden(noisy, attention_mask, attn_ratio, generator)
        b, i = masked.nonzero(as_tuple=True)
        # logits only where there is loss: token i from the state at i-1 (shifted prediction)
        ce = F.cross_entropy(self.head(h[b, i - 1]), input_ids[b, i], reduction="none")
        loss = (ce / t[b]).sum() / maskable.sum().clamp(min=1)
        return DiffusionOutput(loss, noisy, masked, t)

    # ------------------------------------------------------------------------------------------
    # likelihood and decoding

    @torch.no_grad()
    def elbo_nll(self, input_ids: torch.Tensor, blank_mask: torch.Tensor, n_samples: int = 8,
                 seed: int = 0) -> torch.Tensor:
        """(B,) Monte-Carlo ELBO bound on -log p(x_blank | x_visible), nats summed over the blanks.

        An UPPER bound on the NLL (in expectation), not the NLL itself. The estimator is LLaDA's
        conditional form, equal in expectation to MDLM's 1/t one and of lower variance: per sample
        draw k from U{1..L}, stratified over the samples, mask k of the L blanks uniformly (the
        visible text stays), and score (L / k) * sum of the masked blanks' cross-entropies.
        """
        ids = torch.as_tensor(input_ids).to(self.device)
        blanks = torch.as_tensor(blank_mask, dtype=torch.bool).to(self.device)
        if ids.dim() == 1:
            ids, blanks = ids[None], blanks[None]
        if bool(blanks[:, 0].any()):
            raise ValueError("position 0 is the BOS and cannot be a blank")
        gen = torch.Generator().manual_seed(seed)
        S, out = n_samples, []
        for row, bl in zip(ids, blanks):
            pos = bl.nonzero().flatten()  # (L,)
            L = pos.numel()
            if L == 0:
                out.append(torch.zeros((), device=self.device))
                continue
            u = torch.rand((), generator=gen)
            k = ((torch.arange(S) + u) * L / S).floor().long().clamp(max=L - 1) + 1  # (S,) stratified U{1..L}
            order = torch.rand(S, L, generator=gen).argsort(-1)  # a random permutation per sample
            masked_pos = torch.zeros(S, L, dtype=torch.bool)
            masked_pos.scatter_(1, order, torch.arange(L).expand(S, L) < k[:, None])  # first k of it
            masked_pos = masked_pos.to(self.device)
            x = row.expand(S, -1).clone()
            sel = torch.zeros_like(x, dtype=torch.bool)
            sel[:, pos] = masked_pos
            x[sel] = self.mask_id
            h = self.hidden(x)  # (S, T, C)
            s, i = sel.nonzero(as_tuple=True)
            ce = F.cross_entropy(self.head(h[s, i - 1]), row[i], reduction="none")
            per_sample = torch.zeros(S, device=self.device).index_add_(0, s, ce)
            out.append((per_sample * L / k.to(self.device)).mean())
        return torch.stack(out)

    @torch.no_grad()
    def infill_steps(self, input_ids, blank_mask, steps: int,
                     sampling: SamplingConfig | None = None) -> Iterator[DiffusionStep]:
        """Confidence-ordered unmasking (MaskGIT / LLaDA, no remasking) of one BOS-first sequence.

        All blanks start as the mask token. Each step is one full bidirectional forward; of the
        r blanks still masked with n steps left, the ceil(r / n) whose chosen token is most
        probable are committed. `steps` is clipped to [1, L]: forward passes == min(steps, L).
        Greedy unless `sampling` says otherwise.
        """
        ids = torch.as_tensor(input_ids, dtype=torch.long).flatten().clone().to(self.device)
        pending = torch.as_tensor(blank_mask, dtype=torch.bool).flatten().clone().to(self.device)
        if pending.shape != ids.shape:
            raise ValueError(f"blank_mask has {pending.numel()} entries but the text has {ids.numel()} tokens")
        if bool(pending[0]):
            raise ValueError("position 0 is the BOS and cannot be a blank")
        L = int(pending.sum())
        if L == 0:
            raise ValueError("there is no blank: mark at least one position to generate")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        steps = min(steps, L)
        sampler = Sampler(sampling or SamplingConfig(), self.device)
        ids[pending] = self.mask_id
        for s in range(steps):
            idx = pending.nonzero().flatten()  # (r,)
            k = math.ceil(idx.numel() / (steps - s))
            h = self.hidden(ids[None])[0]
            logits = self.head(h[idx - 1])  # (r, V): shifted prediction
            probs = torch.softmax(logits, -1)
            chosen = sampler.choose(logits)
            conf = probs.gather(-1, chosen[:, None]).squeeze(-1)
            sel = conf.topk(k).indices.sort().values
            pos = idx[sel]
            ids[pos] = chosen[sel]
            pending[pos] = False
            yield DiffusionStep(s, pos.tolist(), chosen[sel].tolist(), conf[sel].tolist(), s + 1,
                                int(pending.sum()))

    def infill(self, input_ids, blank_mask, steps: int, sampling: SamplingConfig | None = None) -> DiffusionInfill:
        """Run infill_steps to the end: the filled sequence, its steps and its cost."""
        t0 = time.perf_counter()
        trace = list(self.infill_steps(input_ids, blank_mask, steps, sampling))
        return DiffusionInfill(apply_steps(input_ids, trace), trace, len(trace), time.perf_counter() - t0)

    # ------------------------------------------------------------------------------------------
    # checkpoints: the base's own files plus a `diffusion` section (model/core/checkpoint.py)

    @classmethod
    def from_base(cls, path_or_model, mask_token_id: int, dtype: torch.dtype = torch.float32,
                  **kw) -> "DiffusionLM":
        """Wrap a base causal LM (a loaded model or a local checkpoint directory)."""
        cfg = kw.pop("config", None) or DiffusionConfig()
        if isinstance(path_or_model, (str, Path)):
            base = AutoModelForCausalLM.from_pretrained(str(path_or_model), dtype=dtype, attn_implementation="sdpa")
            cfg.base_model = cfg.base_model or str(path_or_model)
        else:
            base = path_or_model
        return cls(base, cfg, mask_token_id=mask_token_id, **kw)

    def save_pretrained(self, out_dir: str | Path, tokenizer=None) -> Path:
        """config.json (base config + `diffusion` section), model.safetensors, tokenizer files.
        The weights are a plain causal LM's: `LlamaForCausalLM.from_pretrained(out_dir)` loads them."""
        return checkpoint.save_backbone(self.base, out_dir, "diffusion", asdict(self.diffusion_config),
                                        tokenizer=tokenizer)

    @classmethod
    def from_pretrained(cls, ckpt_dir: str | Path, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> "DiffusionLM":
        """Load a checkpoint directory written by save_pretrained (no network)."""
        sec = checkpoint.require_section(ckpt_dir, "diffusion", "is not a diffusion checkpoint (no `diffusion` "
                                         "section in config.json); use DiffusionLM.from_base to adapt a causal LM")
        base, _ = checkpoint.load_backbone(ckpt_dir, dtype=dtype, attn_implementation="sdpa")
        return cls(base, DiffusionConfig(**checkpoint.dataclass_fields(DiffusionConfig, sec))).to(device).eval()


__all__ = ["DiffusionConfig", "DiffusionLM", "DiffusionOutput", "DiffusionStep", "DiffusionInfill"]
