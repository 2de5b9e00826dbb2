"""Checkpoint directories: the one module that reads and writes them (docs/DESIGN.md, "Checkpoints").

A checkpoint is a folder a `transformers` user recognises: config.json (the backbone's config plus
one section of ours), safetensors weights and the tokenizer files. Three kinds carry a section:

    a3         full A3 model: the backbone's weights plus w in model.safetensors, `a3` section
    adapter    A3 LoRA adapter: adapter.safetensors (LoRA A/B + w) over a named base, `a3.lora`
    diffusion  the masked-diffusion baseline: a plain causal LM's weights, `diffusion` section
    causal     a plain causal LM (a base), no section of ours

A3Model, DiffusionLM, the LoRA adapters (model/backbones/lora.py) and the app's model menu all use
the functions below; nothing here knows what the extra tensors mean. No network: tokenizers and
configs are read from local files only.

    read_config / section / require_section / kind / write_config_section    config.json
    save_backbone / load_backbone           a full checkpoint: the backbone, extra tensors, a section
    save_adapter_files / load_adapter_files an adapter checkpoint: its tensors and its `a3` section
    dataclass_fields, load_tokenizer
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

WEIGHTS = "model.safetensors"  # a full checkpoint's weights (the backbone's own file name)
ADAPTER = "adapter.safetensors"  # an adapter checkpoint's LoRA A/B and w


def read_config(ckpt_dir: str | Path) -> dict:
    """A checkpoint directory's config.json as a dict, or a ValueError saying what to pass."""
    path = Path(ckpt_dir) / "config.json"
    if not path.is_file():
        raise ValueError(f"{Path(ckpt_dir)} is not a checkpoint directory (no config.json); "
                         "pass the folder save_pretrained wrote")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path} cannot be read as JSON ({e}); the checkpoint is damaged") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} is not a JSON object; the checkpoint is damaged")
    return cfg


def _write_config(ckpt_dir: str | Path, cfg: dict) -> None:
    (Path(ckpt_dir) / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def write_config_section(ckpt_dir: str | Path, name: str, section: dict) -> None:
    """Add (or replace) one top-level section of a saved checkpoint's config.json."""
    cfg = read_config(ckpt_dir)
    cfg[name] = section
    _write_config(ckpt_dir, cfg)


def section(ckpt_dir: str | Path, name: str) -> dict | None:
    """One section of config.json (`a3`, `diffusion`), or None when the folder has none."""
    try:
        value = read_config(ckpt_dir).get(name)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def require_section(ckpt_dir: str | Path, name: str, refusal: str) -> dict:
    """The section `name`, or a ValueError: no config.json says so, a config without the section
    gives `refusal` (what the folder is instead and what to do)."""
    sec = section(ckpt_dir, name)
    if sec is None:
        read_config(ckpt_dir)  # raises when the folder is not a checkpoint at all
        raise ValueError(f"{ckpt_dir} {refusal}")
    return sec


def kind(ckpt_dir: str | Path) -> str | None:
    """"adapter", "a3", "diffusion", "causal", or None when the folder is not a checkpoint."""
    try:
        cfg = read_config(ckpt_dir)
    except ValueError:
        return None
    a3 = cfg.get("a3")
    if isinstance(a3, dict):
        return "adapter" if isinstance(a3.get("lora"), dict) else "a3"
    return "diffusion" if isinstance(cfg.get("diffusion"), dict) else "causal"


def save_backbone(base: nn.Module, out_dir: str | Path, name: str | None = None, sec: dict | None = None,
                  extra: dict[str, torch.Tensor] | None = None, tokenizer=None) -> Path:
    """Write the backbone (config + model.safetensors, tied weights handled by transformers), the
    `extra` tensors into the same weights file, the section `name` and the tokenizer files.
    `AutoModelForCausalLM.from_pretrained(out_dir)` still loads the backbone alone."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base.save_pretrained(out)
    if extra:
        weights = out / WEIGHTS
        state = load_file(str(weights))
        state.update({k: v.detach().cpu().contiguous() for k, v in extra.items()})
        save_file(state, str(weights), metadata={"format": "pt"})
    if name is not None:
        write_config_section(out, name, sec or {})
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def load_backbone(ckpt_dir: str | Path, extra_keys: tuple[str, ...] = (), dtype: torch.dtype = torch.float32,
                  attn_implementation: str | None = None) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """(backbone, {key: tensor}) from a full checkpoint: the causal LM built from its config, its
    weights loaded strictly, and the `extra_keys` tensors (required) taken out of the weights file."""
    d = Path(ckpt_dir)
    base_cfg = AutoConfig.from_pretrained(str(d), local_files_only=True)
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    base = AutoModelForCausalLM.from_config(base_cfg, dtype=dtype, **kw)
    if not (d / WEIGHTS).is_file():
        raise ValueError(f"{d} has no {WEIGHTS}; the checkpoint is incomplete")
    state = load_file(str(d / WEIGHTS))
    extras = {}
    for key in extra_keys:
        if key not in state:
            raise ValueError(f"{d / WEIGHTS} has no {key}; the checkpoint is incomplete")
        extras[key] = state.pop(key)
    missing, unexpected = base.load_state_dict(state, strict=False)
    tied = bool(getattr(base_cfg, "tie_word_embeddings", False))
    missing = [k for k in missing if not (k == "lm_head.weight" and tied)]
    if missing or unexpected:
        raise ValueError(f"{d}: weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if tied:
        base.tie_weights()
    return base.eval(), extras


def save_adapter_files(out_dir: str | Path, tensors: dict[str, torch.Tensor], config: dict, tokenizer=None) -> Path:
    """Write an adapter checkpoint: `tensors` into adapter.safetensors, `config` (the base's config
    with an `a3` section holding `lora` and `base_model`) as config.json, and the tokenizer files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(out / ADAPTER),
              metadata={"format": "pt"})
    _write_config(out, config)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def load_adapter_files(ckpt_dir: str | Path, required: tuple[str, ...] = ()) -> tuple[dict, dict[str, torch.Tensor]]:
    """(the `a3` section, {key: tensor}) of an adapter checkpoint, or a ValueError that says what
    the folder lacks; each of the `required` tensor keys must be in adapter.safetensors."""
    d = Path(ckpt_dir)
    if kind(d) != "adapter":
        raise ValueError(f"{d} is not an A3 adapter checkpoint (no config.json with `a3.lora`)")
    if not (d / ADAPTER).is_file():
        raise ValueError(f"{d} has no {ADAPTER}; the adapter is incomplete")
    state = load_file(str(d / ADAPTER))
    for key in required:
        if key not in state:
            raise ValueError(f"{d / ADAPTER} has no {key}; the adapter is incomplete")
    return section(d, "a3"), state


def dataclass_fields(cls, values: dict) -> dict:
    """The entries of a config section that `cls` (a dataclass) knows; unknown keys are ignored so
    that older code reads newer checkpoints."""
    return {k: v for k, v in values.items() if k in cls.__dataclass_fields__}


def load_tokenizer(ckpt_dir: str | Path):
    """The tokenizer saved beside a checkpoint (local files only)."""
    return AutoTokenizer.from_pretrained(str(ckpt_dir), local_files_only=True)
