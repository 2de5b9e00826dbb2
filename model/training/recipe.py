"""A training recipe: the run's settings and its list of stages, read from a JSON config.

    TrainConfig.from_json("configs/austen_tiny.json")   the shipped tiny model's recipe
    Stage(name, sampler, steps, lr, ...)                 one stage of the curriculum
    lr_at(step, stage)                                   linear warm-up, cosine decay to 10%

Stage samplers (docs/DESIGN.md, "Training: progressive adaptation"):
  "base"                 stage 0: a plain LlamaForCausalLM trained left to right from scratch
  "ar", "contiguous:N", "random:a-b", "span_order:a-b", "infill[:causal]", "mix[:P]"
                         A3 stages (model.core.samplers.make_sampler), one grouping per sequence
  "diffusion[:N]"        the masked-diffusion baseline (N: steps of causal-to-full annealing)

Two stage options keep a pretrained base's English while it learns A3 (both off by default):
  ar_share   the share of this stage's batches drawn left to right (singleton groups), besides its sampler
  anchor     the weight of a KL term, on left-to-right batches, from the base's own next-token
             distribution (the same network with the LoRA adapter disabled) to A3's
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    name: str
    sampler: str  # "base" (stage 0: plain causal LM), "diffusion[:N]" or a samplers.make_sampler spec
    steps: int
    lr: float
    warmup: int = 50
    score_first: bool = True  # False: no loss on each sequence's first group (train log p(rest | first group))
    ar_share: float = 0.0  # A3 stages: share of batches drawn left to right instead of from `sampler`
    anchor: float = 0.0  # A3 LoRA stages: weight of KL(base || A3) on left-to-right batches
    tail_weight: float = 1.0  # loss weight of the last two tokens of every blank span (steps.blank_tails)
    slack_share: float = 0.0  # share of this stage's own rows given a blank with slack slots (slack_rows.py)
    end_weight: float = 1.0  # loss weight of the slot where a slack blank's fill ends (slack_rows.fill_ends)


@dataclass
class TrainConfig:
    data_dir: str = "data/austen"
    # several prepared corpora and the share of training rows drawn from each, e.g.
    # {"data/brown": 0.75, "data/austen": 0.25}; empty: data_dir alone. Held-out rows: eval_rows from each.
    data_mix: dict[str, float] = field(default_factory=dict)
    out_dir: str = "runs/a3-austen-tiny"
    seq_len: int = 256
    batch_size: int = 16
    grad_accum: int = 1
    # the stage-0 base model (LLaMA architecture); ignored when base_model is given
    n_layer: int = 4
    hidden: int = 256
    n_head: int = 4
    n_kv_head: int = 4
    intermediate: int = 688
    base_model: str = ""  # start from this causal-LM checkpoint (or "smollm2-135m-gguf") instead of stage 0
    lora: dict | None = None  # {"r", "alpha", "targets", "mlp"}: train a LoRA adapter + w over base_model
    init_adapter: str = ""  # LoRA: start from this adapter checkpoint's weights instead of a fresh adapter
    weight_decay: float = 0.01
    w_lr_scale: float = 1.0  # the query vector w learns at this multiple of the stage's rate
    # the learned length signal (training/slack_rows.py): the token that fills a blank's unused slots, and the
    # most slots a slack blank has; a stage's slack_share > 0 needs empty_token to be one token of the vocabulary
    empty_token: str = "<repo_name>"  # SmolLM2's <empty_output> shares its embedding row with six tokens
    max_slots: int = 48
    # slack slots' queries start from w + the empty token's embedding (a3.slack_marker): the model can tell
    # a blank whose length it chooses from one of given length, so the signal stays out of the others
    slack_marker: bool = True
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_rows: int = 64  # held-out rows per evaluation (per corpus with data_mix)
    save_every: int = 100
    seed: int = 0
    mixed_precision: str = "auto"  # "auto": bf16 on GPU and on CPUs with AVX-512 BF16 or AMX, fp32 ("no") elsewhere
    max_seconds: float = 0.0  # > 0: save out/last and stop after this many seconds of this process (resume later)
    stages: list[Stage] = field(default_factory=lambda: [
        Stage("0-base", "base", 900, 2e-3, 50),
        Stage("1-ar", "ar", 150, 5e-4, 20),
        Stage("2-contiguous-2", "contiguous:2", 150, 5e-4, 20),
        Stage("2-contiguous-4", "contiguous:4", 150, 5e-4, 20),
        Stage("3-any-order", "mix", 900, 5e-4, 30),
    ])

    @classmethod
    def from_json(cls, path: str | Path, **overrides) -> "TrainConfig":
        raw = json.loads(Path(path).read_text())
        raw.update({k: v for k, v in overrides.items() if v is not None})
        raw["stages"] = [Stage(**s) if isinstance(s, dict) else s for s in raw.get("stages", [])] or cls().stages
        return cls(**raw)

    @property
    def corpora(self) -> dict[str, float]:
        """{prepared corpus dir: share of training rows}."""
        return dict(self.data_mix) if self.data_mix else {self.data_dir: 1.0}


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


def check(cfg: TrainConfig) -> None:
    """Refuse a malformed recipe before any work, with a message saying what to change."""
    for s in cfg.stages:
        if stage_kind(s.sampler) == "diffusion":
            anneal_ratio(s.sampler, 0)
        if (not 0.0 <= s.ar_share <= 1.0 or s.anchor < 0 or s.tail_weight <= 0 or s.end_weight <= 0
                or not 0.0 <= s.slack_share <= 1.0):
            raise ValueError(f"stage {s.name!r}: ar_share and slack_share must be in [0, 1], anchor >= 0 and "
                             "tail_weight and end_weight > 0")
        if s.anchor and not cfg.lora:
            raise ValueError(f"stage {s.name!r}: the KL anchor compares with the base through the disabled "
                             "LoRA adapter; set `lora` or drop `anchor`")
    if cfg.lora and (not cfg.base_model or any(stage_kind(s.sampler) != "a3" for s in cfg.stages)):
        raise ValueError("a LoRA run needs base_model and A3 stages only (no 'base' or 'diffusion' stage)")
    if cfg.init_adapter and not cfg.lora:
        raise ValueError("init_adapter starts a LoRA run from an adapter; set `lora` too")
    shares = cfg.corpora.values()
    if any(not (isinstance(v, (int, float)) and v > 0) for v in shares) or not math.isclose(sum(shares), 1.0):
        raise ValueError(f"data_mix shares must be positive and sum to 1; got {cfg.data_mix}")


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX): there bf16 autocast
    trains an adapter 1.4-2x faster than fp32 (docs/recipes.md); elsewhere it is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(setting: str) -> str:
    """Accelerate's mixed_precision for a recipe's setting: "auto" picks bf16 on a GPU or a bf16 CPU."""
    if setting != "auto":
        return setting
    import torch
    return "bf16" if torch.cuda.is_available() or cpu_has_bf16() else "no"


def lr_at(step: int, stage: Stage) -> float:
    """Linear warm-up, then cosine decay to 10% of the stage's peak."""
    if step < stage.warmup:
        return stage.lr * (step + 1) / stage.warmup
    t = (step - stage.warmup) / max(1, stage.steps - stage.warmup)
    return stage.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, t))))
