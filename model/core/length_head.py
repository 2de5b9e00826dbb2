"""The length head: a small learned head that says how long a blank of unknown length is likely to be.

    feats = length_features(model, [(ids, blank_positions), ...])   # (B, 3C) frozen A3 states
    head, log = length_fit.fit(feats, true_lengths)                 # model/training/length_fit.py
    head.log_prior(feats[0:1], [1, 2, 4, 8, 16])                   # log p(L) at those lengths
    choose_length(head, feats[0:1], grid)                           # the length a [[?]] blank gets
    head.save(ckpt_dir); LengthHead.load(ckpt_dir)                  # length_head.safetensors

A `[[?]]` blank of a checkpoint with a head is decoded at ONE length: of the app's grid of
lengths, the one nearest the head's median given the text around the blank (`choose_length`);
without a head it is decoded at every length of the grid and the candidates ranked. The head
reads the adapter's own states and changes none of them:

- the story is laid out with the blank collapsed to ONE slot (its length unknown, one slot says
  nothing about it), the visible text in the context group, the slot queried;
- features: the slot's final query state (what the model expects there, seeing both sides), and
  the content states of the last token before the blank and of the story's last token (the
  visible text is one block, so both see all of it): (3C,);
- the head: standardized features, one linear map to (mu, log sigma) of a log-normal over the
  length; p(L) is its mass on [L - 0.5, L + 0.5].

Fixed-length blanks never read it, so A3's exact likelihoods and every fixed-length fill are
untouched (docs/DESIGN.md, "Blank lengths the model chooses").
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .groups import BOS_GROUP, PAD_GROUP
from .two_stream import two_stream_walk

FILE = "length_head.safetensors"
MAX_LENGTH = 512  # lengths above this have no use in a story; the prior is normalized below it


def collapse(ids: Sequence[int], blank: Sequence[int], slot_id: int) -> tuple[list[int], int]:
    """(ids with the blank's positions replaced by one slot, the slot's position). The blank must be
    one contiguous run of positions after the BOS."""
    blank = sorted(blank)
    if not blank or blank[0] < 1 or blank != list(range(blank[0], blank[-1] + 1)):
        raise ValueError(f"the blank must be one contiguous span after the BOS; got positions {blank[:8]}")
    ids = list(ids)
    return ids[:blank[0]] + [slot_id] + ids[blank[-1] + 1:], blank[0]


@torch.no_grad()
def length_features(model, rows: Sequence[tuple], batch: int = 16) -> torch.Tensor:
    """(B, 3C) fp32 features of each row (module docstring): (BOS-first ids, the blank's positions)
    or (ids, blank, hidden): hidden, the positions of the story's other blanks, are no one's keys."""
    dev, out = model.device, []
    for s in range(0, len(rows), batch):
        chunk = [(r[0], r[1], r[2] if len(r) > 2 else ()) for r in rows[s:s + batch]]
        laid = [collapse(ids, blank, int(ids[0])) for ids, blank, _ in chunk]
        T = max(len(ids) for ids, _ in laid)
        B = len(laid)
        ids = torch.zeros(B, T, dtype=torch.long, device=dev)
        valid = torch.zeros(B, T, dtype=torch.bool, device=dev)
        for b, ((row, slot), (_, blank, hidden)) in enumerate(zip(laid, chunk)):
            ids[b, :len(row)] = torch.tensor(row, device=dev)
            valid[b, :len(row)] = True
            valid[b, slot] = False  # the slot is not visible text
            shift = len(blank) - 1  # positions after the blank moved back by this much
            for h in hidden:
                valid[b, h - shift if h > slot else h] = False
        groups = torch.where(valid, 1, PAD_GROUP)  # the visible text: one block after the BOS
        groups[:, 0] = BOS_GROUP
        slots = torch.tensor([[slot] for _, slot in laid], device=dev)  # (B, 1)
        pos = torch.arange(T, device=dev).expand(B, T)
        q, c = two_stream_walk(model.base, model.embed(ids), pos, groups, valid, model.query_input(B, 1),
                               slots, torch.full((B, 1), 2, device=dev), content_out=True)
        before = torch.tensor([slot - 1 for _, slot in laid], device=dev)
        last = torch.tensor([len(row) - 1 for row, _ in laid], device=dev)
        rng = torch.arange(B, device=dev)
        out.append(torch.cat([q[:, 0], c[rng, before], c[rng, last]], dim=-1).float().cpu())
    return torch.cat(out)


class LengthHead(nn.Module):
    """log L ~ Normal(mu(x), sigma(x)) from standardized features x (module docstring)."""

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.linear = nn.Linear(n_features, 2)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) of log L, each (B,)."""
        y = self.linear((feats.float() - self.mean) / self.std)
        return y[:, 0], nn.functional.softplus(y[:, 1]) + 0.05

    def nll(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of log lengths (B,) under the head: what fitting minimizes."""
        mu, sigma = self(feats)
        return (torch.log(sigma) + 0.5 * ((torch.log(lengths.float()) - mu) / sigma) ** 2).mean()

    @torch.no_grad()
    def log_prior(self, feats: torch.Tensor, lengths: Sequence[int]) -> list[float]:
        """log p(L) for each length of one blank (feats (1, F)): the log-normal's mass on
        [L - 0.5, L + 0.5], over its mass on [0.5, MAX_LENGTH + 0.5] (lengths are whole tokens)."""
        if any(not 1 <= int(n) <= MAX_LENGTH for n in lengths):
            raise ValueError(f"lengths must be from 1 to {MAX_LENGTH}; got {list(lengths)}")
        mu, sigma = (float(t[0]) for t in self(feats[:1]))
        cdf = lambda x: 0.5 * (1 + math.erf((math.log(x) - mu) / (sigma * math.sqrt(2))))  # noqa: E731
        total = cdf(MAX_LENGTH + 0.5) - cdf(0.5)
        return [math.log(max(cdf(n + 0.5) - cdf(n - 0.5), 1e-300) / total) for n in lengths]

    @torch.no_grad()
    def interval(self, feats: torch.Tensor, mass: float = 0.5) -> tuple[float, float, float]:
        """(median, low, high) length of one blank: the central `mass` of the head's belief."""
        mu, sigma = (float(t[0]) for t in self(feats[:1]))
        z = math.sqrt(2) * torch.erfinv(torch.tensor(mass)).item()
        return math.exp(mu), math.exp(mu - z * sigma), math.exp(mu + z * sigma)

    def save(self, ckpt_dir: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(ckpt_dir) / FILE
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(path))
        return path

    @classmethod
    def load(cls, ckpt_dir: str | Path) -> "LengthHead | None":
        """The checkpoint's head, or None when it has none."""
        path = Path(ckpt_dir) / FILE
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        state = load_file(str(path))
        head = cls(state["mean"].numel())
        head.load_state_dict(state)
        return head.eval()


def choose_length(head: LengthHead, feats: torch.Tensor, lengths: Sequence[int]) -> dict:
    """The length a `[[?]]` blank gets among `lengths` (a grid): the one nearest the head's median
    in log length (ties: the shorter), with what the head believes of the blank (feats (1, F)):
    {length, log_p {L: log p(L)}, p {L: p(L) over the grid}, median, low, high (the central half,
    rounded to tokens)}. `python -m model.fills` measures it as "the grid length nearest its
    median"; the grid length with the most mass (the log-normal's mode, below its median) picked
    fills 5 tokens too short at the median and cut sentences off (docs/DESIGN.md)."""
    log_p = dict(zip(lengths, head.log_prior(feats, lengths)))
    z = sum(math.exp(v) for v in log_p.values())
    med, lo, hi = head.interval(feats, 0.5)
    best = min(sorted(log_p), key=lambda n: abs(math.log(n / med)))
    return {"length": best, "log_p": log_p, "p": {n: math.exp(v) / z for n, v in log_p.items()},
            "median": round(med), "low": round(lo), "high": round(hi)}


def length_head(model) -> LengthHead | None:
    """The head load_a3 attached to a model (None: the model has none)."""
    return getattr(model, "length_head", None)


__all__ = ["FILE", "LengthHead", "choose_length", "collapse", "length_features", "length_head"]
