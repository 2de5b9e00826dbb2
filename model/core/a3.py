"""The A3 model object: a pretrained causal LM plus one learned query vector w.

    A3Model(base)                 wraps any LLaMA-family `transformers` causal LM, reusing its modules
    forward(ids, g, mask, labels) loss and logits of p(x_i | x_j with g(j) < g(i)) at every position
    token_logprobs(ids, g, mask)  exact per-token log-probabilities under a grouping (scoring)
    from_base / save_pretrained / from_pretrained   checkpoints as transformers-style directories

Batches are BOS-first: position 0 holds the BOS, which every query sees and nothing predicts;
padding (attention_mask 0) is invisible to both streams and carries no loss. The logit at
position i predicts token i (no shift; the paper's convention). The two-stream math is in
two_stream.py, the groupings in groups.py; this file does the bookkeeping around them.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from .groups import prepare_group_ids
from .two_stream import check_backbone, two_stream_walk

W_KEY = "a3.query_vector"  # the name of w in the checkpoint's safetensors file
WEIGHTS = "model.safetensors"


@dataclass
class A3Config:
    """The `a3` section of a checkpoint's config.json."""
    version: int = 1
    context_grouping: str = "block"  # default inference context grouping (see groups.group_ids_from_order)
    base_model: str = ""  # where the backbone came from (a path or a hub id), for the model card
    training: dict = field(default_factory=dict)  # recipe summary written by the trainer


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

    def query_input(self, B: int, M: int) -> torch.Tensor:
        """(B, M, C): the query stream's input, w at every target."""
        return self.w.view(1, 1, -1).expand(B, M, -1)

    def head(self, q_states: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits from final-norm query states (fp32 for stable softmax)."""
        return self.base.lm_head(q_states).float()

    # ------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, group_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                content_out: bool = False) -> A3Output:
        """One full two-stream forward over a BOS-first batch under a grouping.

        input_ids, group_ids: (B, T); attention_mask: (B, T) 1 for real tokens; labels: (B, T)
        with -100 where no loss is wanted (default when given as None: every real token after
        the BOS is a target). Returns loss (if labels) and logits (B, T, V).
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
        q_states, c_states = two_stream_walk(self.base, self.embed(input_ids), pos, g, valid,
                                             self.query_input(B, T), pos, q_g, content_out=content_out)
        logits = self.head(q_states)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                               ignore_index=-100)
        return A3Output(loss, logits, c_states)

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
                       attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) exact log p(x_i | x_j for g(j) < g(i)); 0 at the BOS and at padding.

        Summed over a sequence this is log p(x) under the grouping: exact for singleton groups,
        the group-factorized likelihood otherwise.
        """
        logits = self.forward(input_ids, group_ids, attention_mask).logits
        lp = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[..., None]).squeeze(-1)
        lp[:, 0] = 0.0
        if attention_mask is not None:
            lp = lp.masked_fill(~attention_mask.bool(), 0.0)
        return lp

    # ------------------------------------------------------------------------------------------
    # checkpoints

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
        """Write config.json (base config + `a3` section), model.safetensors (base weights + w)
        and, if given, the tokenizer files. `LlamaForCausalLM.from_pretrained(out_dir)` still
        loads the backbone alone (it ignores w)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.base.save_pretrained(out)  # handles tied weights and the config
        weights = out / WEIGHTS
        state = load_file(str(weights))
        state[W_KEY] = self.w.detach().cpu().contiguous()
        save_file(state, str(weights), metadata={"format": "pt"})
        write_config_section(out, "a3", asdict(self.a3_config))
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        return out

    @classmethod
    def from_pretrained(cls, ckpt_dir: str | Path, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> "A3Model":
        """Load an A3 checkpoint directory written by save_pretrained (no network)."""
        d = Path(ckpt_dir)
        cfg = read_config(d)
        if "a3" not in cfg:
            raise ValueError(f"{d} holds a plain causal LM, not an A3 checkpoint; use A3Model.from_base to adapt it")
        base_cfg = AutoConfig.from_pretrained(str(d))
        base = AutoModelForCausalLM.from_config(base_cfg, dtype=dtype)
        state = load_file(str(d / WEIGHTS))
        w = state.pop(W_KEY, None)
        if w is None:
            raise ValueError(f"{d / WEIGHTS} has no {W_KEY}; the checkpoint is incomplete")
        missing, unexpected = base.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (k == "lm_head.weight" and base_cfg.tie_word_embeddings)]
        if missing or unexpected:
            raise ValueError(f"checkpoint weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if base_cfg.tie_word_embeddings:
            base.tie_weights()
        a3 = {k: v for k, v in cfg["a3"].items() if k in A3Config.__dataclass_fields__}
        model = cls(base, A3Config(**a3))
        model.w.data.copy_(w.to(model.w.dtype))
        return model.to(device).eval()


def read_config(ckpt_dir: str | Path) -> dict:
    """A checkpoint directory's config.json as a dict, or a ValueError saying what to pass."""
    path = Path(ckpt_dir) / "config.json"
    if not path.is_file():
        raise ValueError(f"{Path(ckpt_dir)} is not a checkpoint directory (no config.json); "
                         "pass the folder save_pretrained wrote")
    return json.loads(path.read_text())


def write_config_section(ckpt_dir: str | Path, name: str, section: dict) -> None:
    """Add (or replace) one top-level section of a saved checkpoint's config.json."""
    cfg = read_config(ckpt_dir)
    cfg[name] = section
    (Path(ckpt_dir) / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_tokenizer(ckpt_dir: str | Path):
    """The tokenizer saved beside a checkpoint (local files only)."""
    return AutoTokenizer.from_pretrained(str(ckpt_dir), local_files_only=True)
