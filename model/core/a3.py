"""The A3 model object: a pretrained causal LM plus one learned query vector w.

    A3Model(base)                 wraps any LLaMA-family `transformers` causal LM, reusing its modules
    forward(ids, g, mask, labels) loss and logits of p(x_i | x_j with g(j) < g(i)) at every position
    token_logprobs(ids, g, mask)  exact per-token log-probabilities under a grouping (scoring)
    from_base / save_pretrained / from_pretrained   checkpoints (files: checkpoint.py)

Batches are BOS-first: position 0 holds the BOS, which every query sees and nothing predicts;
padding (attention_mask 0) is invisible to both streams and carries no loss. The logit at
position i predicts token i (no shift; the paper's convention). The two-stream math is in
two_stream.py, the groupings in groups.py; this file does the bookkeeping around them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from . import checkpoint
from .groups import prepare_group_ids
from .two_stream import check_backbone, two_stream_walk

W_KEY = "a3.query_vector"  # the name of w in the checkpoint's safetensors file


@dataclass
class A3Config:
    """The `a3` section of a checkpoint's config.json."""
    version: int = 1
    context_grouping: str = "block"  # default inference context grouping (see groups.group_ids_from_order)
    base_model: str = ""  # where the backbone came from (a path or a hub id), for the model card
    training: dict = field(default_factory=dict)  # recipe summary written by the trainer
    # the learned length signal, when trained (model/training/slack_rows.py): {"empty_id", "empty_token",
    # "max_slots"}; a blank whose length the model chooses ends at its first slot that gets empty_id
    length_signal: dict = field(default_factory=dict)


@dataclass
class A3Output:
    loss: torch.Tensor | None  # mean NLL over real tokens (None without labels)
    logits: torch.Tensor  # (B, T, V); position 0 and padding rows are meaningless
    content: torch.Tensor | None = None  # (B, T, C) final-norm content states, when asked for


class A3Model(nn.Module):
    """Two-stream any-order model over a pretrained decoder `base` (LlamaForCausalLM & co.)."""

    def __init__(self, base: nn.Module, a3_config: A3Config | None = None, init_seed: int = 0):
        super().__init__()
        check_backbone(base)
        self.base = base
        self.a3_config = a3_config or A3Config()
        emb = base.get_input_embeddings().weight
        # w at embedding scale (the reference code's N(0, 1) is ~50x too large): one random
        # vector whose coordinates have the spread of the token embeddings
        gen = torch.Generator().manual_seed(init_seed)
        # (on the CPU generator, whatever the base's device: a base trained on a GPU in stage 0 too)
        w = torch.randn(emb.shape[1], generator=gen) * emb.detach().float().std().item()
        self.w = nn.Parameter(w.to(device=emb.device, dtype=emb.dtype))

    # ------------------------------------------------------------------------------------------
    @property
    def config(self):
        return self.base.config

    @property
    def device(self) -> torch.device:
        return self.w.device

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.base.get_input_embeddings()(ids)

    def slack_marker(self) -> torch.Tensor | None:
        """(C,) what a slack slot's query adds to w, when the length signal was trained with it:
        the input embedding of the empty token (no new parameter), so that the model can tell a
        blank whose length it chooses from one of given length (docs/DESIGN.md). None otherwise."""
        sig = self.a3_config.length_signal or {}
        if not sig.get("marker"):
            return None
        return self.embed(torch.tensor([sig["empty_id"]], device=self.device))[0]

    def query_input(self, B: int, M: int, marked: torch.Tensor | None = None) -> torch.Tensor:
        """(B, M, C): the query stream's input, w at every target, plus the slack marker at the
        targets `marked` (B, M) True (slots of a blank whose length the model chooses)."""
        w = self.w.view(1, 1, -1).expand(B, M, -1)
        v = self.slack_marker() if marked is not None else None
        return w if v is None else w + marked[..., None].to(w.dtype) * v

    def head(self, q_states: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits from final-norm query states (fp32 for stable softmax)."""
        return self.base.lm_head(q_states).float()

    # ------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, group_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                content_out: bool = False, query_positions: torch.Tensor | None = None,
                slack_mask: torch.Tensor | None = None) -> A3Output:
        """One full two-stream forward over a BOS-first batch under a grouping.

        input_ids, group_ids: (B, T); attention_mask: (B, T) 1 for real tokens; labels: (B, T)
        with -100 where no loss is wanted (default when given as None: every real token after
        the BOS is a target). query_positions: (B, M) the positions whose predictions are wanted
        (default: all T); the query stream then runs at those M rows only, and every row it runs
        equals the full forward's row at that position (the query rows never see each other).
        slack_mask: (B, T) True at the slots of slack blanks (their queries get the slack marker).
        Returns loss (if labels) and logits (B, T, V), or (B, M, V) at query_positions.
        """
        B, T = input_ids.shape
        if group_ids.shape != input_ids.shape:
            raise ValueError(f"group_ids shape {tuple(group_ids.shape)} must equal input_ids shape {tuple(input_ids.shape)}")
        g = prepare_group_ids(group_ids.to(input_ids.device), attention_mask)
        valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        pos = torch.arange(T, device=input_ids.device).expand(B, T)
        # the BOS query row predicts nothing; letting it see the BOS keeps its attention row
        # non-empty (an all-masked row gives NaN in some SDPA kernels, and NaN * 0 in backward)
        q_g = g.clone()
        q_g[:, 0] = 0
        q_pos = pos
        marked = None if slack_mask is None else slack_mask.to(input_ids.device).bool()  # (B, T)
        if query_positions is not None:
            q_pos = query_positions.to(input_ids.device).long()  # (B, M)
            q_g = q_g.gather(1, q_pos)
            marked = None if marked is None else marked.gather(1, q_pos)
        q_states, c_states = two_stream_walk(self.base, self.embed(input_ids), pos, g, valid,
                                             self.query_input(B, q_pos.shape[1], marked), q_pos, q_g,
                                             content_out=content_out)
        logits = self.head(q_states)
        loss = None
        if labels is not None:
            if query_positions is not None:
                labels = labels.to(q_pos.device).gather(1, q_pos)
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                               ignore_index=-100)
        return A3Output(loss, logits, c_states)

    @staticmethod
    def scored_positions(labels: torch.Tensor) -> torch.Tensor:
        """(B, M) the positions of every row whose label is not -100, padded with position 0 (the
        BOS, whose label is always -100) to the longest row: the query rows a loss needs."""
        keep = labels != -100  # (B, T)
        M = max(1, int(keep.sum(dim=1).max()))
        # stable sort puts the kept positions first, in position order
        order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :M]  # (B, M)
        return torch.where(keep.gather(1, order), order, torch.zeros_like(order))

    @staticmethod
    def default_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Targets = the tokens themselves, with the BOS and padding set to -100."""
        labels = input_ids.clone()
        labels[:, 0] = -100
        if attention_mask is not None:
            labels[~attention_mask.bool()] = -100
        return labels

    @torch.no_grad()
    def token_logprobs(self, input_ids: torch.Tensor, group_ids: torch.Tensor,
                       attention_mask: torch.Tensor | None = None,
                       positions: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) exact log p(x_i | x_j for g(j) < g(i)); 0 at the BOS and at padding.

        Summed over a sequence this is log p(x) under the grouping: exact for singleton groups,
        the group-factorized likelihood otherwise. positions: (B, M) only these positions'
        log-probabilities, (B, M), with the query stream run at those rows alone.
        """
        logits = self.forward(input_ids, group_ids, attention_mask, query_positions=positions).logits
        targets = input_ids if positions is None else input_ids.gather(1, positions.to(input_ids.device))
        lp = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
        if positions is not None:
            return lp.masked_fill(positions.to(lp.device) == 0, 0.0)
        lp[:, 0] = 0.0
        if attention_mask is not None:
            lp = lp.masked_fill(~attention_mask.bool(), 0.0)
        return lp

    # ------------------------------------------------------------------------------------------
    # checkpoints (the files themselves: checkpoint.py)

    @classmethod
    def from_base(cls, path_or_model, dtype: torch.dtype = torch.float32, **kw) -> "A3Model":
        """Wrap a base causal LM (a loaded model or a local checkpoint directory) with a fresh w."""
        if isinstance(path_or_model, (str, Path)):
            base = AutoModelForCausalLM.from_pretrained(str(path_or_model), dtype=dtype)
            kw.setdefault("a3_config", A3Config(base_model=str(path_or_model)))
        else:
            base = path_or_model
        return cls(base, **kw)

    def save_pretrained(self, out_dir: str | Path, tokenizer=None) -> Path:
        """config.json (base config + `a3` section), model.safetensors (base weights + w), and the
        tokenizer if given. `LlamaForCausalLM.from_pretrained(out_dir)` still loads the backbone alone."""
        return checkpoint.save_backbone(self.base, out_dir, "a3", asdict(self.a3_config), {W_KEY: self.w},
                                        tokenizer)

    @classmethod
    def from_pretrained(cls, ckpt_dir: str | Path, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> "A3Model":
        """Load an A3 checkpoint directory written by save_pretrained (no network)."""
        a3 = checkpoint.require_section(ckpt_dir, "a3", "holds a plain causal LM, not an A3 checkpoint; "
                                        "use A3Model.from_base to adapt it")
        base, extra = checkpoint.load_backbone(ckpt_dir, (W_KEY,), dtype)
        model = cls(base, A3Config(**checkpoint.dataclass_fields(A3Config, a3)))
        model.w.data.copy_(extra[W_KEY].to(model.w.dtype))
        return model.to(device).eval()
