"""What a training run trains, at each point of its recipe: the stage-0 causal LM, A3 over it
(full or LoRA), or the masked-diffusion baseline, and the switch between them at stage 0's end."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from peft import get_peft_model_state_dict, set_peft_model_state_dict

from model.backbones.lora import ATTN, MLP, add_lora, adapter_section, base_tokenizer, load_adapter, resolve_base, unload_lora
from model.backbones.smollm_base import REF as SMOLLM_REF
from model.baselines.diffusion import DiffusionConfig, DiffusionLM
from model.core.a3 import A3Config, A3Model
from model.corpus.austen import load_tokenizer

from .recipe import Stage, TrainConfig, stage_kind


def recipe_tokenizer(cfg: TrainConfig):
    """A pretrained base reads the corpora with its own tokenizer; stage 0 with the corpus's BPE."""
    if cfg.lora or cfg.base_model == SMOLLM_REF:
        return base_tokenizer(cfg.base_model)
    return load_tokenizer(cfg.data_dir if not cfg.data_mix else next(iter(cfg.data_mix)))


def build_base(cfg: TrainConfig, vocab: int) -> LlamaForCausalLM:
    """The causal LM the recipe starts from: a named base, or a fresh LLaMA for stage 0."""
    if cfg.base_model == SMOLLM_REF:
        return resolve_base(SMOLLM_REF)
    if cfg.base_model:
        return AutoModelForCausalLM.from_pretrained(cfg.base_model, dtype=torch.float32)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=cfg.hidden, num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head,
        intermediate_size=cfg.intermediate, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=1, pad_token_id=2, rope_theta=10000.0))


def wrap_diffusion(base, tokenizer, source: str) -> DiffusionLM:
    """The AR base as a masked diffusion LM over the tokenizer's <mask> token."""
    if tokenizer.mask_token_id is None:
        raise ValueError("the tokenizer has no mask token; a diffusion stage needs one (<mask>)")
    return DiffusionLM(base, DiffusionConfig(base_model=source), mask_token_id=tokenizer.mask_token_id)


def initial_model(cfg: TrainConfig, tokenizer):
    """The model before the first stage: a LoRA adapter (fresh, or init_adapter's weights), A3 or
    diffusion over the named base, or the base itself when the recipe starts with stage 0."""
    first = cfg.stages[0].sampler
    if cfg.init_adapter:
        a3 = adapter_section(cfg.init_adapter)
        if a3 is None or a3.get("base_model") != cfg.base_model:
            raise ValueError(f"init_adapter {cfg.init_adapter!r} must be an adapter checkpoint over "
                             f"{cfg.base_model!r} (its config's a3.base_model)")
        model = load_adapter(cfg.init_adapter, merge=False)
        if cfg.lora and lora_shape(cfg.lora) != lora_shape(model.lora):
            model = widen_adapter(model, cfg.lora)
        return model
    model = build_base(cfg, len(tokenizer))
    if stage_kind(first) == "diffusion":
        return wrap_diffusion(model, tokenizer, cfg.base_model or "stage 0")
    if first != "base":
        model = A3Model.from_base(model, a3_config=A3Config(base_model=cfg.base_model or "stage 0"))
        if cfg.lora:
            model = add_lora(model, **cfg.lora)
    return model


def lora_shape(lora: dict) -> tuple[int, float, list[str]]:
    """(rank, alpha, every targeted module) of a recipe's `lora` section or of an adapter's config."""
    targets = list(dict.fromkeys([*lora.get("targets", ATTN), *(MLP if lora.get("mlp") else ())]))
    return lora.get("r", 16), lora.get("alpha", 32), targets


def widen_adapter(model: A3Model, lora: dict) -> A3Model:
    """The same function under a larger LoRA config (a higher rank, more targets): a fresh adapter
    of `lora` whose first r_old ranks hold the old A and B (B rescaled to the new alpha / r); its
    other ranks start with B = 0, as a fresh adapter does, so the logits do not move."""
    old = model.lora
    new = {**old, **{k: v for k, v in lora.items() if k != "mlp"}}
    new["targets"] = lora_shape(lora)[2]
    if new["r"] < old["r"] or not set(old["targets"]) <= set(new["targets"]):
        raise ValueError(f"an adapter can only widen: rank {old['r']} -> {new['r']}, targets {old['targets']} -> "
                         f"{new['targets']}")
    ratio = (old["alpha"] / old["r"]) / (new["alpha"] / new["r"])
    state = {k: v.clone() for k, v in get_peft_model_state_dict(model.base).items()}
    w = model.w.detach().clone()
    merged_targets = new.pop("targets")
    widened = add_lora(A3Model(unload_lora(model), model.a3_config), targets=merged_targets,
                       **{k: v for k, v in new.items() if k in ("r", "alpha", "dropout")})
    fresh = get_peft_model_state_dict(widened.base)
    for key, val in state.items():
        tgt = fresh[key].clone()
        if "lora_A" in key:
            tgt[:old["r"]] = val
        else:  # lora_B: (out, r)
            tgt[:, :old["r"]] = val * ratio
            tgt[:, old["r"]:] = 0
        fresh[key] = tgt
    set_peft_model_state_dict(widened.base, fresh)
    with torch.no_grad():
        widened.w.copy_(w)
    return widened


def enter_stage(model, stage: Stage, out: Path, tokenizer, cfg: TrainConfig, is_main: bool):
    """The model a stage trains: at the end of stage 0 the AR base is kept in out/base and wrapped
    (A3 with a fresh w, or diffusion with the mask token); otherwise the model as it is."""
    kind = stage_kind(stage.sampler)
    if (kind == "diffusion" and isinstance(model, A3Model)) or (kind == "a3" and isinstance(model, DiffusionLM)):
        raise ValueError(f"stage {stage.name!r} ({kind}) cannot follow a {'diffusion' if kind == 'a3' else 'A3'} "
                         "stage: both start from the AR base; train them as separate runs with --base-model")
    if kind == "base" or isinstance(model, (A3Model, DiffusionLM)):
        return model
    if is_main:
        model.save_pretrained(out / "base")
        tokenizer.save_pretrained(out / "base")
    source = cfg.base_model or "stage 0 (out/base)"
    if kind == "diffusion":
        return wrap_diffusion(model, tokenizer, source)
    return A3Model.from_base(model, a3_config=A3Config(base_model=source))
