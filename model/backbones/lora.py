"""LoRA adapters for A3: the base stays frozen, low-rank updates of its projections plus w learn.

    model = add_lora(A3Model(base), r=16, alpha=32)      # in place; trainable: LoRA A/B + w
    save_adapter(model, "out", "smollm2-135m-gguf", tokenizer)
    model = load_adapter("out")                          # base + adapter, merged, ready for decode
    model, tokenizer = load_a3("dir")                    # either kind of A3 checkpoint

peft's `inject_adapter_in_model` swaps each targeted nn.Linear of `model.base` for a LoRA Linear
in place, under the same attribute name. two_stream_walk calls `attn.q_proj(...)` etc. on the
concatenated [content; query] rows, so both streams go through the same adapted projections,
as they share the base's projections (docs/DESIGN.md, "Two streams over a pretrained decoder"). LoRA's B starts at zero: a
fresh adapter is exactly the base.

An adapter checkpoint is a directory (written and read by model/core/checkpoint.py's
save_adapter_files / load_adapter_files; this module says what its tensors mean):
    config.json          the base config plus an `a3` section with `lora: {r, alpha, targets,
                         dropout}` and `base_model` (a local path, or "smollm2-135m-gguf" for the
                         converted SmolLM2 base of backbones/smollm_base.py)
    adapter.safetensors  LoRA A/B (peft key names, adapter name stripped) and w; a few MB
    tokenizer files
`load_adapter` merges the LoRA weights into the base by default (W + (alpha/r) B A): decoding
then runs plain Linear layers at the base's speed, and the logits equal the unmerged model's to
float rounding (~1e-6). Training and resuming use merge=False.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from model.core import checkpoint
from model.core.a3 import W_KEY, A3Config, A3Model
from model.core.checkpoint import ADAPTER

from . import smollm_base

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def is_adapter(model: nn.Module) -> bool:
    """True for an A3Model carrying (unmerged) LoRA layers added by add_lora."""
    return getattr(model, "lora", None) is not None


def add_lora(model: A3Model, r: int = 16, alpha: int = 32, targets=ATTN, mlp: bool = False,
             dropout: float = 0.0) -> A3Model:
    """Wrap the base's `targets` Linear layers (plus the MLP's with mlp=True) with LoRA, in place.

    Afterwards only the LoRA A/B matrices and w require grad. Returns the model.
    """
    if is_adapter(model):
        raise ValueError("the model already has LoRA layers; add_lora once")
    targets = list(dict.fromkeys([*targets, *(MLP if mlp else ())]))
    if not targets or r < 1:
        raise ValueError(f"LoRA needs at least one target module and r >= 1 (got targets={targets}, r={r})")
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=dropout, bias="none")
    inject_adapter_in_model(cfg, model.base)
    for name, p in model.base.named_parameters():
        p.requires_grad_("lora_" in name)
    model.w.requires_grad_(True)
    model.lora = {"r": r, "alpha": alpha, "targets": targets, "dropout": dropout}
    return model


def lora_state(model: A3Model) -> dict[str, torch.Tensor]:
    """The adapter's tensors: LoRA A/B under peft's names (adapter name stripped) and w."""
    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model.base).items()}
    state[W_KEY] = model.w.detach().cpu().contiguous()
    return state


def save_adapter(model: A3Model, out_dir: str | Path, base_ref: str | None = None, tokenizer=None) -> Path:
    """Write config.json (base config + `a3` with `lora` and `base_model`), adapter.safetensors and
    the tokenizer. base_ref names the base the adapter applies to (default: a3_config.base_model)."""
    if not is_adapter(model):
        raise ValueError("the model has no LoRA layers; use A3Model.save_pretrained for a full checkpoint")
    ref = base_ref or model.a3_config.base_model
    if not ref:
        raise ValueError(f"name the base the adapter applies to (base_ref), e.g. {smollm_base.REF!r} or a local path")
    cfg = model.base.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["a3"] = {**asdict(model.a3_config), "base_model": ref, "lora": dict(model.lora)}
    return checkpoint.save_adapter_files(out_dir, lora_state(model), cfg, tokenizer)


def adapter_section(ckpt_dir: str | Path) -> dict | None:
    """The `a3` section of an adapter checkpoint's config.json, or None for anything else."""
    return checkpoint.section(ckpt_dir, "a3") if checkpoint.kind(ckpt_dir) == "adapter" else None


def resolve_base(ref: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The causal LM a base reference names: "smollm2-135m-gguf" (smollm_base.py) or a local checkpoint dir."""
    from transformers import AutoModelForCausalLM

    if ref == smollm_base.REF:
        return smollm_base.load_base(dtype=dtype)[0]
    if not (Path(ref) / "config.json").is_file():
        raise FileNotFoundError(f"base model {ref!r} is neither {smollm_base.REF!r} nor a local checkpoint directory")
    return AutoModelForCausalLM.from_pretrained(ref, dtype=dtype).eval()


def base_tokenizer(ref: str):
    """Just the tokenizer of a base reference (no weights loaded)."""
    from transformers import AutoTokenizer

    path = smollm_base.base_dir() if ref == smollm_base.REF else Path(ref)
    if not (path / "tokenizer_config.json").is_file():
        hint = "run `python -m model.smollm fetch`" if ref == smollm_base.REF else "save the tokenizer beside the base"
        raise FileNotFoundError(f"no tokenizer for base {ref!r} at {path}; {hint}")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


@contextmanager
def adapters_disabled(model: nn.Module):
    """Run the wrapped base as it was before the adapter: peft's own switch on every LoRA layer
    (BaseTunerLayer.enable_adapters, what PeftModel.disable_adapter uses), restored on exit."""
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    was = [m.disable_adapters for m in layers]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield model
    finally:
        for m, off in zip(layers, was):
            m.enable_adapters(not off)


def merge_lora(model: A3Model) -> A3Model:
    """Fold every LoRA update into its base Linear (W += scale * B A) and drop the LoRA layers."""
    for module in model.base.modules():
        if isinstance(module, LoraLayer):
            module.merge()
    unload_lora(model)
    return model


def unload_lora(model: A3Model) -> nn.Module:
    """The base with every LoRA layer replaced by its original Linear (the adapter dropped, not merged)."""
    for name, module in list(model.base.named_modules()):
        if isinstance(module, LoraLayer):
            parent, _, attr = name.rpartition(".")
            setattr(model.base.get_submodule(parent), attr, module.get_base_layer())
    model.base.__dict__.pop("peft_config", None)  # inject_adapter_in_model's bookkeeping
    model.lora = None
    return model.base


def load_adapter(ckpt_dir: str | Path, base: nn.Module | None = None, merge: bool = True,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> A3Model:
    """The A3 model of an adapter checkpoint: its base (given, or loaded from `a3.base_model`)
    plus the LoRA weights and w; merged into plain Linear layers unless merge=False."""
    a3, state = checkpoint.load_adapter_files(ckpt_dir, required=(W_KEY,))
    if base is None:
        base = resolve_base(a3["base_model"])
    model = add_lora(A3Model(base, A3Config(**checkpoint.dataclass_fields(A3Config, a3))), **a3["lora"])
    w = state.pop(W_KEY)
    res = set_peft_model_state_dict(model.base, state)
    unexpected = list(getattr(res, "unexpected_keys", []) or [])
    missing = [k for k in (getattr(res, "missing_keys", []) or []) if "lora_" in k]
    if unexpected or missing:
        raise ValueError(f"{Path(ckpt_dir) / ADAPTER} does not match its config's LoRA layers: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    with torch.no_grad():
        model.w.copy_(w.to(model.w.dtype))
    if merge:
        merge_lora(model)
        model.requires_grad_(False)
    return model.to(device=device, dtype=dtype).eval()


def load_a3(ckpt_dir: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """(model, tokenizer) for any A3 checkpoint: an adapter (merged) or a full one, with its length
    head (core/length_head.py) as `model.length_head` when the checkpoint has one, else None."""
    from model.core.length_head import LengthHead

    if adapter_section(ckpt_dir) is not None:
        model = load_adapter(ckpt_dir, dtype=dtype, device=device)
    else:
        model = A3Model.from_pretrained(ckpt_dir, dtype=dtype, device=device)
    # a plain attribute, not a submodule: precisions, parameter counts and saving see the A3 model alone
    object.__setattr__(model, "length_head", LengthHead.load(ckpt_dir))
    return model, checkpoint.load_tokenizer(ckpt_dir)
