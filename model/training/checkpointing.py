"""The trainer's checkpoints: `out/last` (what a restart resumes from), `out/base` (the stage-0
model) and `out/final` (the finished A3, adapter or diffusion checkpoint). The files themselves
are written by the models' own save methods (model/core/checkpoint.py underneath)."""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM

from model.backbones.lora import adapter_section, is_adapter, load_adapter, save_adapter
from model.baselines.diffusion import DiffusionLM
from model.core.a3 import A3Model


def save_model(net, out: Path, tokenizer) -> None:
    """Any of the trainer's models (causal LM, A3, adapter, diffusion) with its tokenizer."""
    if is_adapter(net):
        save_adapter(net, out, tokenizer=tokenizer)
    elif isinstance(net, (A3Model, DiffusionLM)):
        net.save_pretrained(out, tokenizer=tokenizer)
    else:
        net.save_pretrained(out)
        tokenizer.save_pretrained(out)


def record_training(net, cfg, tokens: int, elapsed: float, at: dict | None = None) -> None:
    """The recipe and the budget spent so far, in the checkpoint's own section (its `training`
    record); `at` (stage index and step) marks a snapshot taken before the recipe's end."""
    recipe = net.a3_config if isinstance(net, A3Model) else net.diffusion_config
    recipe.training = {"stages": [asdict(s) for s in cfg.stages], "seq_len": cfg.seq_len,
                       "batch_size": cfg.batch_size * cfg.grad_accum, "tokens": tokens,
                       "seconds": round(elapsed), "corpora": cfg.corpora,
                       **({"init_adapter": cfg.init_adapter} if cfg.init_adapter else {}),
                       **({"snapshot_at": at} if at else {})}


def save_state(acc: Accelerator, model, opt, out: Path, stage_idx: int, step: int, tokens: int,
               elapsed: float, rng: random.Random, tokenizer, cfg=None) -> None:
    """Write out/last atomically: weights, optimizer, position in the recipe, RNG. With the
    recipe `cfg`, an A3 or diffusion snapshot records its own training so far (record_training),
    not the record of the checkpoint it started from."""
    if not acc.is_main_process:
        return
    tmp = out / "last.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    net = acc.unwrap_model(model)
    if cfg is not None and isinstance(net, (A3Model, DiffusionLM)):
        record_training(net, cfg, tokens, elapsed, {"stage": stage_idx, "step": step})
    save_model(net, tmp, tokenizer)
    # at a stage boundary the next stage starts a fresh optimizer, so none is kept
    torch.save({"optimizer": None if step == 0 else opt.state_dict(), "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
    prog = {"stage": stage_idx, "step": step, "tokens": tokens, "elapsed": elapsed, "a3": isinstance(net, A3Model)}
    if isinstance(net, DiffusionLM):  # only diffusion runs carry the key: A3 runs keep their format
        prog["diffusion"] = True
    (tmp / "progress.json").write_text(json.dumps(prog))
    shutil.rmtree(out / "last", ignore_errors=True)
    tmp.rename(out / "last")


def load_last(out: Path):
    """(model, progress dict) from out/last, or None when there is nothing to resume."""
    last = out / "last"
    if not (last / "progress.json").is_file():
        return None
    prog = json.loads((last / "progress.json").read_text())
    if prog.get("diffusion"):
        model = DiffusionLM.from_pretrained(last)
    elif adapter_section(last) is not None:
        model = load_adapter(last, merge=False)
    elif prog["a3"]:
        model = A3Model.from_pretrained(last)
    else:
        model = AutoModelForCausalLM.from_pretrained(last, dtype=torch.float32)
    return model, prog


def restore_optimizer(out: Path, opt, rng: random.Random) -> None:
    """The optimizer and RNG state saved with out/last (mid-stage resumes only)."""
    path = out / "last" / "trainer_state.pt"
    if not path.is_file():
        return
    st = torch.load(path, weights_only=False)
    if st["optimizer"] is not None:
        opt.load_state_dict(st["optimizer"])
    rng.setstate(st["rng"])
    torch.set_rng_state(st["torch_rng"])


def save_final(net, out: Path, cfg, tokens: int, elapsed: float, tokenizer) -> Path:
    """out/final with the recipe and budget recorded in the checkpoint's own section."""
    if not isinstance(net, (A3Model, DiffusionLM)):
        raise ValueError("the recipe ended without an A3 or diffusion stage; add at least one stage after 'base'")
    record_training(net, cfg, tokens, elapsed)
    save_model(net, out / "final", tokenizer)
    return out / "final"
