"""Progressive adaptation: one plain training loop on Accelerate over a recipe's stages, resumable.

    python -m model.train --config configs/austen_tiny.json          # the shipped model's recipe
    python -m model.train --config configs/austen_tiny.json --out runs/x   # resumes if runs/x/last exists

The recipe (stages, samplers, the anchor) is recipe.py's; what is trained at each point,
models.py's; a step's batch and loss, steps.py's; out/last, out/base and out/final,
checkpointing.py's. Each stage gets a fresh AdamW with linear warm-up and cosine decay; the stage
list may be edited between restarts (steps of later stages, say). Metrics go to
`out/metrics.jsonl`; held-out NLL is measured every `eval_every` steps on fixed rows.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm import tqdm

from model.core.samplers import make_sampler

from . import checkpointing
from .evaluate import held_out_nll
from .models import enter_stage, initial_model, recipe_tokenizer
from .recipe import Stage, TrainConfig, anneal_ratio, check, lr_at, resolve_precision, stage_kind
from .slack_rows import apply_slack
from .steps import TrainData, anchor_kl, clause_starts, grouping_batch, punctuation_ids, stage_loss

__all__ = ["Stage", "TrainConfig", "anneal_ratio", "lr_at", "main", "stage_kind", "train"]
AR = make_sampler("ar")


class Run:
    """A run's place in its recipe and its bookkeeping: stage, step, tokens, time, RNG, metrics log."""

    def __init__(self, cfg: TrainConfig, acc: Accelerator):
        self.cfg, self.acc, self.out = cfg, acc, Path(cfg.out_dir)
        self.stage_idx = self.step = self.tokens = 0
        self.elapsed, self.t_start = 0.0, time.time()
        # every process of a multi-process run draws its own batches (process 0 as a single run would)
        self.rng = random.Random(cfg.seed if acc.process_index == 0 else f"{cfg.seed}-{acc.process_index}")
        self.log = open(self.out / "metrics.jsonl", "a")

    def emit(self, rec: dict) -> None:
        if self.acc.is_main_process:
            self.log.write(json.dumps(rec) + "\n")
            self.log.flush()

    def out_of_time(self) -> bool:
        return self.cfg.max_seconds > 0 and time.time() - self.t_start > self.cfg.max_seconds


def batch_loss(model, stage: Stage, ids: torch.Tensor, sampler, run: Run, dgen) -> torch.Tensor:
    """One micro-batch's loss: diffusion, causal LM, or A3 under a drawn grouping (left to right
    for the stage's ar_share of batches, with the KL anchor there when the stage sets one)."""
    if stage_kind(stage.sampler) == "diffusion":
        return model(ids, attn_ratio=anneal_ratio(stage.sampler, run.step), generator=dgen).loss
    if sampler is None:
        return stage_loss(model, ids, None)
    left_to_right = stage.sampler == "ar" or (stage.ar_share > 0 and run.rng.random() < stage.ar_share)
    starts = None if left_to_right else clause_starts(ids.cpu(), run.punct)
    g = grouping_batch(AR if left_to_right else sampler, len(ids), run.cfg.seq_len, run.rng, starts).to(ids.device)
    own = not left_to_right or stage.sampler == "ar"  # a batch of the stage's own sampler
    slots = None
    if own and stage.slack_share > 0:
        ids, g, slots = apply_slack(ids, g, stage.slack_share, run.rng, run.empty_id, starts, run.cfg.max_slots)
        ids, g, slots = ids.to(g.device), g.to(g.device), slots.to(g.device) if run.cfg.slack_marker else None
    if not (left_to_right and stage.anchor > 0):
        return stage_loss(model, ids, g, stage.score_first or not own, tail_weight=stage.tail_weight if own else 1.0,
                          end_weight=stage.end_weight, empty_id=run.empty_id if own and stage.slack_share > 0 else None,
                          slack_mask=slots)
    loss, logits = stage_loss(model, ids, g, True, return_logits=True)
    return loss + stage.anchor * anchor_kl(model, ids, logits)


def train_stage(model, stage: Stage, data: TrainData, tokenizer, run: Run, resume: bool) -> tuple[object, bool]:
    """Run one stage from run.step to its end; (model, finished). False: out of time, saved."""
    cfg, acc = run.cfg, run.acc
    model.train()
    w = getattr(model, "w", None)
    rest = [p for p in model.parameters() if p.requires_grad and p is not w]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if w is not None and w.requires_grad:
        groups.append({"params": [w], "lr_scale": cfg.w_lr_scale})
    opt = torch.optim.AdamW(groups, lr=stage.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    if resume:
        checkpointing.restore_optimizer(run.out, opt, run.rng)
        if acc.process_index:  # the saved RNG is process 0's; the others draw their own
            run.rng.seed(f"{cfg.seed}-{acc.process_index}-{run.step}")
    model, opt = acc.prepare(model, opt)
    sampler = make_sampler(stage.sampler) if stage_kind(stage.sampler) == "a3" else None
    dgen = torch.Generator().manual_seed(cfg.seed + 1000 * run.stage_idx + run.step)  # diffusion t / masks
    bar = tqdm(total=stage.steps, initial=run.step, desc=stage.name, mininterval=30, disable=not acc.is_main_process)
    t_last = time.time()
    while run.step < stage.steps:
        for pg in opt.param_groups:
            pg["lr"] = lr_at(run.step, stage) * pg.get("lr_scale", 1.0)
        for _ in range(cfg.grad_accum):
            ids = data.batch(run.rng, cfg.batch_size).to(acc.device)
            with acc.accumulate(model):
                loss = batch_loss(model, stage, ids, sampler, run, dgen)
                acc.backward(loss)
                if acc.sync_gradients and cfg.grad_clip:
                    acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
            run.tokens += ids.numel()
        run.step += 1
        now = time.time()
        run.elapsed, t_last = run.elapsed + now - t_last, now
        bar.update(1)
        run.emit({"stage": stage.name, "step": run.step, "loss": loss.item(), "lr": lr_at(run.step - 1, stage),
                  "tokens": run.tokens, "elapsed": round(run.elapsed, 1)})
        done = run.step == stage.steps
        if run.step % cfg.eval_every == 0 or done:
            ev = held_out_nll(acc.unwrap_model(model), data.eval, stage.sampler, cfg.batch_size, cfg.seed, stage.score_first)
            run.emit({"stage": stage.name, "step": run.step, "eval": ev, "tokens": run.tokens,
                      "elapsed": round(run.elapsed, 1)})
            bar.set_postfix(ev)
        stop = run.out_of_time()
        if run.step % cfg.save_every == 0 or done or stop:
            checkpointing.save_state(acc, model, opt, run.out, run.stage_idx + done, 0 if done else run.step,
                                     run.tokens, run.elapsed, run.rng, tokenizer, cfg)
        if stop and not (done and run.stage_idx + 1 == len(cfg.stages)):
            acc.print(f"stopped after {cfg.max_seconds:.0f} s at stage {stage.name!r} step {run.step}; "
                      f"run the same command again to resume from {run.out / 'last'}")
            return model, False
    bar.close()
    return acc.unwrap_model(model), True


def train(cfg: TrainConfig) -> Path | None:
    """Run (or resume) the recipe; the final checkpoint's path, or None when max_seconds stopped it."""
    check(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    acc = Accelerator(mixed_precision=resolve_precision(cfg.mixed_precision), gradient_accumulation_steps=cfg.grad_accum)
    torch.manual_seed(cfg.seed)
    tokenizer = recipe_tokenizer(cfg)
    data = TrainData(cfg.corpora, cfg.seq_len, tokenizer, cfg.eval_rows)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    run = Run(cfg, acc)
    run.punct = punctuation_ids(tokenizer)
    resumed = checkpointing.load_last(out)
    if resumed:
        model, prog = resumed
        run.stage_idx, run.step, run.tokens, run.elapsed = prog["stage"], prog["step"], prog["tokens"], prog["elapsed"]
        acc.print(f"resuming at stage {run.stage_idx} step {run.step} ({run.tokens} tokens)")
    else:
        model = initial_model(cfg, tokenizer)
    if any(s.slack_share > 0 for s in cfg.stages):
        run.empty_id = empty_token_id(tokenizer, cfg.empty_token, model)
    try:
        while run.stage_idx < len(cfg.stages):
            stage = cfg.stages[run.stage_idx]
            model = enter_stage(model, stage, out, tokenizer, cfg, acc.is_main_process)
            if stage.slack_share > 0:  # the checkpoint says that it has learned the length signal
                model.a3_config.length_signal = {"empty_id": run.empty_id, "empty_token": cfg.empty_token,
                                                 "max_slots": cfg.max_slots, "marker": cfg.slack_marker}
            model, finished = train_stage(model, stage, data, tokenizer, run, bool(resumed))
            resumed = None  # the saved optimizer belongs to the first stage resumed only
            if not finished:
                return None
            run.stage_idx, run.step = run.stage_idx + 1, 0
            acc.free_memory()
        if not acc.is_main_process:
            return out / "final"
        return checkpointing.save_final(model, out, cfg, run.tokens, run.elapsed, tokenizer)
    finally:
        run.log.close()


def empty_token_id(tokenizer, token: str, model=None) -> int:
    """The id of the token that fills a slack blank's unused slots. It must be one token of the
    vocabulary and, given the model, have an output-embedding row of its own: where the base
    shares that row with other tokens (SmolLM2's GGUF gives `<empty_output>` and six others one
    identical row), their logits are always equal, so the model can never give the empty token
    more than a share of their mass and greedy decoding never writes it."""
    tid = tokenizer.get_vocab().get(token)
    if tid is None:
        raise ValueError(f"empty_token {token!r} is not a token of this tokenizer; name one that is (SmolLM2 "
                         "has '<repo_name>'), or set no slack_share")
    head = None if model is None else getattr(getattr(model, "base", model), "get_output_embeddings", lambda: None)()
    if head is not None:
        W = head.weight.detach()  # (V, H)
        twins = [i for i in (W == W[tid]).all(1).nonzero().flatten().tolist() if i != tid]
        if twins:
            names = ", ".join(repr(tokenizer.convert_ids_to_tokens(i)) for i in twins[:6])
            raise ValueError(f"empty_token {token!r} shares its output-embedding row with {len(twins)} other "
                             f"token(s) ({names}): the model could never tell them apart. Name a token with a "
                             "row of its own (for SmolLM2: '<repo_name>')")
    return tid


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m model.train", description="Train the A3 curriculum (stage 0 "
                                "base + stages 1-3), a LoRA adapter over a pretrained base, or the "
                                "masked-diffusion baseline (a 'diffusion' stage).")
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
    try:
        cfg = TrainConfig.from_json(a.config, **over) if a.config else TrainConfig(
            **{k: v for k, v in over.items() if v is not None})
    except (OSError, TypeError, ValueError) as e:
        p.error(f"cannot read the recipe: {e}")
    for s in cfg.stages:
        s.steps = max(1, round(s.steps * a.steps_scale))
    print(train(cfg))


if __name__ == "__main__":
    main()
