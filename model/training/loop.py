"""Progressive adaptation: one plain training loop on Accelerate, a list of stages, resumable.

    python -m model.train --config configs/austen_tiny.json          # the shipped model's recipe
    python -m model.train --config configs/austen_tiny.json --out runs/x   # resumes if runs/x/last exists

Stages (DESIGN.md, "Training"; a stage is a config entry: grouping sampler, steps, lr, warm-up):
  0  sampler "base": a plain LlamaForCausalLM trained left to right from scratch (the AR base)
  1  "ar": A3 with singleton groups left to right (teaches the query stream the AR task)
  2  "contiguous:2", "contiguous:4": contiguous groups left to right, growing
  3  "mix": random groups (4-8), spans in random order, and the infilling patterns inference uses
One grouping is drawn per sequence (groups.make_sampler); loss on real tokens only.

The masked-diffusion baseline (model/diffusion.py) uses the same loop: a stage with sampler
"diffusion" (or "diffusion:N", attention annealed from causal to full over its first N steps, as
DiffuGPT does) wraps the AR base in DiffusionLM, at the end of stage 0 or at once with
`--base-model`. Its held-out number is `nll_bound`, the MDLM ELBO bound per token (>= NLL).
Diffusion and A3 stages cannot follow one another in one recipe: both start from the AR base.

Each stage gets a fresh AdamW with linear warm-up and cosine decay. `out/last/` holds the latest
checkpoint (weights, optimizer, stage and step, RNG state) and a restart resumes from it; the
stage list may be edited between restarts (steps of later stages, say). Metrics go to
`out/metrics.jsonl`; held-out NLL is measured every `eval_every` steps on fixed eval rows.
`out/base/` keeps the stage-0 model, `out/final/` the finished A3 (or diffusion) checkpoint.

LoRA (`lora` set, see model/lora.py): the A3 stages train LoRA adapters of the frozen
`base_model` ("smollm2-135m-gguf" or a local checkpoint) plus w, on text tokenized with the
base's own tokenizer; out/last and out/final are adapter checkpoints. No stage 0.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm import tqdm
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from model.core.a3 import A3Config, A3Model
from model.corpus.austen import load_packed, load_tokenizer
from model.baselines.diffusion import DiffusionConfig, DiffusionLM
from model.core.groups import make_sampler
from .steps import anneal_ratio, evaluate, grouping_batch, save_state, stage_kind, stage_loss
from model.backbones.lora import add_lora, adapter_section, base_tokenizer, is_adapter, load_adapter, resolve_base, save_adapter
from model.backbones.smollm import REF as SMOLLM_REF


@dataclass
class Stage:
    name: str
    sampler: str  # "base" (stage 0: plain causal LM), "diffusion[:N]" or a groups.make_sampler spec
    steps: int
    lr: float
    warmup: int = 50
    score_first: bool = True  # False: no loss on each sequence's first group (train log p(rest | first group))


@dataclass
class TrainConfig:
    data_dir: str = "data/austen"
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
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_rows: int = 64  # held-out rows per evaluation
    save_every: int = 100
    seed: int = 0
    mixed_precision: str = "auto"  # "auto": bf16 on GPU, fp32 ("no") on CPU
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


def lr_at(step: int, stage: Stage) -> float:
    """Linear warm-up, then cosine decay to 10% of the stage's peak."""
    if step < stage.warmup:
        return stage.lr * (step + 1) / stage.warmup
    t = (step - stage.warmup) / max(1, stage.steps - stage.warmup)
    return stage.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, t))))


def build_base(cfg: TrainConfig, vocab: int) -> LlamaForCausalLM:
    if cfg.base_model == SMOLLM_REF:
        return resolve_base(SMOLLM_REF)
    if cfg.base_model:
        return AutoModelForCausalLM.from_pretrained(cfg.base_model, dtype=torch.float32)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=cfg.hidden, num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head,
        intermediate_size=cfg.intermediate, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=1, pad_token_id=2, rope_theta=10000.0))


def train(cfg: TrainConfig) -> Path | None:
    """Run (or resume) the recipe; the final checkpoint's path, or None when max_seconds stopped it."""
    t_start = time.time()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() else "no"
    acc = Accelerator(mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum)
    torch.manual_seed(cfg.seed)
    for s in cfg.stages:
        if stage_kind(s.sampler) == "diffusion":
            anneal_ratio(s.sampler, 0)  # refuse a malformed spec before any work
    if cfg.lora and (not cfg.base_model or any(stage_kind(s.sampler) != "a3" for s in cfg.stages)):
        raise ValueError("a LoRA run needs base_model and A3 stages only (no 'base' or 'diffusion' stage)")
    # a pretrained base with its own vocabulary reads the corpus with its own tokenizer
    own_tok = cfg.lora or cfg.base_model == SMOLLM_REF
    tokenizer = base_tokenizer(cfg.base_model) if own_tok else load_tokenizer(cfg.data_dir)
    train_ids = load_packed(cfg.data_dir, "train", cfg.seq_len, tokenizer)
    eval_ids = load_packed(cfg.data_dir, "eval", cfg.seq_len, tokenizer)[:cfg.eval_rows]
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    # where are we in the recipe?
    stage_idx, step, tokens, elapsed = 0, 0, 0, 0.0
    rng = random.Random(cfg.seed)
    last = out / "last"
    resume = (last / "progress.json").is_file()
    if resume:
        prog = json.loads((last / "progress.json").read_text())
        stage_idx, step, tokens, elapsed = prog["stage"], prog["step"], prog["tokens"], prog["elapsed"]
        if prog.get("diffusion"):
            model = DiffusionLM.from_pretrained(last)
        elif adapter_section(last) is not None:
            model = load_adapter(last, merge=False)
        else:
            model = (A3Model.from_pretrained(last) if prog["a3"]
                     else AutoModelForCausalLM.from_pretrained(last, dtype=torch.float32))
        acc.print(f"resuming at stage {stage_idx} step {step} ({tokens} tokens)")
    else:
        model = build_base(cfg, len(tokenizer))
        if stage_kind(cfg.stages[0].sampler) == "diffusion":
            model = wrap_diffusion(model, tokenizer, cfg.base_model or "stage 0")
        elif cfg.stages[0].sampler != "base":
            model = A3Model.from_base(model, a3_config=A3Config(base_model=cfg.base_model or "stage 0"))
            if cfg.lora:
                model = add_lora(model, **cfg.lora)
    log = open(out / "metrics.jsonl", "a")

    def emit(rec: dict) -> None:
        if acc.is_main_process:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    while stage_idx < len(cfg.stages):
        stage = cfg.stages[stage_idx]
        kind = stage_kind(stage.sampler)
        is_a3, diffusion = kind == "a3", kind == "diffusion"
        if (diffusion and isinstance(model, A3Model)) or (is_a3 and isinstance(model, DiffusionLM)):
            raise ValueError(f"stage {stage.name!r} ({kind}) cannot follow a {'diffusion' if is_a3 else 'A3'} "
                             "stage: both start from the AR base; train them as separate runs with --base-model")
        if diffusion and not isinstance(model, DiffusionLM):
            # the end of stage 0: keep the AR base, then run it bidirectionally with a mask token
            if acc.is_main_process:
                model.save_pretrained(out / "base")
                tokenizer.save_pretrained(out / "base")
            model = wrap_diffusion(model, tokenizer, cfg.base_model or "stage 0 (out/base)")
        if is_a3 and not isinstance(model, A3Model):
            # the end of stage 0: keep the AR base, then wrap it with a fresh query vector w
            if acc.is_main_process:
                model.save_pretrained(out / "base")
                tokenizer.save_pretrained(out / "base")
            model = A3Model.from_base(model, a3_config=A3Config(base_model=cfg.base_model or "stage 0 (out/base)"))
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=stage.lr,
                                weight_decay=cfg.weight_decay,
                                betas=(0.9, 0.95))
        if resume and (last / "trainer_state.pt").is_file():
            st = torch.load(last / "trainer_state.pt", weights_only=False)
            if st["optimizer"] is not None:
                opt.load_state_dict(st["optimizer"])
            rng.setstate(st["rng"])
            torch.set_rng_state(st["torch_rng"])
            resume = False
        model, opt = acc.prepare(model, opt)
        sampler = None if not is_a3 else make_sampler(stage.sampler)
        dgen = torch.Generator().manual_seed(cfg.seed + 1000 * stage_idx + step)  # diffusion t / masks
        bar = tqdm(total=stage.steps, initial=step, desc=stage.name, mininterval=30,
                   disable=not acc.is_main_process)
        t_last = time.time()
        while step < stage.steps:
            for pg in opt.param_groups:
                pg["lr"] = lr_at(step, stage)
            for _ in range(cfg.grad_accum):
                rows = torch.tensor([rng.randrange(len(train_ids)) for _ in range(cfg.batch_size)])
                ids = train_ids[rows].to(acc.device)
                g = None if sampler is None else grouping_batch(sampler, len(ids), cfg.seq_len, rng).to(acc.device)
                with acc.accumulate(model):
                    if diffusion:
                        loss = model(ids, attn_ratio=anneal_ratio(stage.sampler, step), generator=dgen).loss
                    else:
                        loss = stage_loss(model, ids, g, stage.score_first)
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.grad_clip:
                        acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                tokens += ids.numel()
            step += 1
            now = time.time()
            elapsed += now - t_last
            t_last = now
            bar.update(1)
            emit({"stage": stage.name, "step": step, "loss": loss.item(), "lr": lr_at(step - 1, stage),
                  "tokens": tokens, "elapsed": round(elapsed, 1)})
            if step % cfg.eval_every == 0 or step == stage.steps:
                ev = evaluate(acc.unwrap_model(model), eval_ids, stage.sampler, cfg.batch_size, cfg.seed,
                              stage.score_first)
                emit({"stage": stage.name, "step": step, "eval": ev, "tokens": tokens, "elapsed": round(elapsed, 1)})
                bar.set_postfix(ev)
            out_of_time = cfg.max_seconds > 0 and time.time() - t_start > cfg.max_seconds
            if step % cfg.save_every == 0 or step == stage.steps or out_of_time:
                done = step == stage.steps
                save_state(acc, model, opt, out, stage_idx + done, 0 if done else step, tokens, elapsed, rng,
                           tokenizer, is_a3, diffusion)
            if out_of_time and not (done and stage_idx + 1 == len(cfg.stages)):
                acc.print(f"stopped after {cfg.max_seconds:.0f} s at stage {stage.name!r} step {step}; "
                          f"run the same command again to resume from {out / 'last'}")
                log.close()
                return None
        bar.close()
        model = acc.unwrap_model(model)
        stage_idx, step = stage_idx + 1, 0
        acc.free_memory()
    final = out / "final"
    if acc.is_main_process:
        net = model
        if not isinstance(net, (A3Model, DiffusionLM)):
            raise ValueError("the recipe ended without an A3 or diffusion stage; add at least one stage after 'base'")
        recipe = net.a3_config if isinstance(net, A3Model) else net.diffusion_config
        recipe.training = {"stages": [asdict(s) for s in cfg.stages], "seq_len": cfg.seq_len,
                           "batch_size": cfg.batch_size * cfg.grad_accum, "tokens": tokens,
                           "seconds": round(elapsed)}
        save_adapter(net, final, tokenizer=tokenizer) if is_adapter(net) else net.save_pretrained(final, tokenizer=tokenizer)
    log.close()
    return final


def wrap_diffusion(base, tokenizer, source: str) -> DiffusionLM:
    """The AR base as a masked diffusion LM over the tokenizer's <mask> token."""
    if tokenizer.mask_token_id is None:
        raise ValueError("the tokenizer has no mask token; a diffusion stage needs one (<mask>)")
    return DiffusionLM(base, DiffusionConfig(base_model=source), mask_token_id=tokenizer.mask_token_id)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Train the A3 curriculum (stage 0 base + stages 1-3) "
                                "or the masked-diffusion baseline (a 'diffusion' stage).")
    p.add_argument("--config", help="JSON file with TrainConfig fields and a 'stages' list")
    p.add_argument("--out", dest="out_dir", help="output directory (resumes from OUT/last if present)")
    p.add_argument("--data", dest="data_dir", help="prepared corpus (python -m model.data prepare)")
    p.add_argument("--base-model", help="start from this causal-LM checkpoint instead of training stage 0")
    p.add_argument("--batch-size", type=int, help="sequences per micro-batch")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--seq-len", type=int, help="tokens per sequence, BOS included")
    p.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], help="auto: bf16 on GPU, fp32 on CPU")
    p.add_argument("--save-every", type=int, help="steps between checkpoints of out/last")
    p.add_argument("--eval-every", type=int, help="steps between held-out evaluations")
    p.add_argument("--max-seconds", type=float, help="save and stop after this many seconds (resume by rerunning)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps (quick runs)")
    a = p.parse_args(argv)
    over = {k: v for k, v in vars(a).items() if k not in ("config", "steps_scale")}
    cfg = TrainConfig.from_json(a.config, **over) if a.config else TrainConfig(
        **{k: v for k, v in over.items() if v is not None})
    for s in cfg.stages:
        s.steps = max(1, round(s.steps * a.steps_scale))
    print(train(cfg))


if __name__ == "__main__":
    main()
