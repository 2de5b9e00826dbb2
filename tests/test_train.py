"""Trainer: a few-step run of a tiny config on a tiny synthetic corpus lowers the loss and resumes."""
import json
import random
from pathlib import Path

import pytest
import torch
from conftest import make_a3

from model.core.a3 import A3Model
from model.core.samplers import make_sampler
from model.training.loop import Stage, TrainConfig, lr_at, train
from model.training.steps import grouping_batch, stage_loss


def tiny_cfg(corpus, out, stages):
    return TrainConfig(data_dir=str(corpus), out_dir=str(out), mixed_precision="no", seq_len=32, batch_size=8, n_layer=2, hidden=32,
                       n_head=4, n_kv_head=2, intermediate=64, eval_every=1000, eval_rows=8, save_every=5,
                       seed=0, stages=stages)


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_curriculum_lowers_loss_and_writes_checkpoints(corpus, tmp_path):
    """Stage 0 (base) then A3 stages: eval NLL drops in each, base/ and final/ are written."""
    stages = [Stage("0-base", "base", 30, 3e-3, 3), Stage("1-ar", "ar", 10, 3e-3, 2),
              Stage("3-mix", "mix", 10, 3e-3, 2)]
    final = train(tiny_cfg(corpus, tmp_path, stages))
    recs = metrics(tmp_path)
    base_loss = [r["loss"] for r in recs if r.get("stage") == "0-base" and "loss" in r]
    assert base_loss[-1] < base_loss[0] - 1.0, f"stage-0 loss should fall well: {base_loss[0]:.2f} -> {base_loss[-1]:.2f}"
    a3_loss = [r["loss"] for r in recs if r.get("stage") != "0-base" and "loss" in r]
    assert min(a3_loss[-5:]) < a3_loss[0], f"A3 loss should fall: {a3_loss[0]:.2f} -> {a3_loss[-5:]}"
    assert (tmp_path / "base" / "config.json").is_file(), "the stage-0 base model should be kept in out/base"
    model = A3Model.from_pretrained(final)
    assert model.a3_config.training["tokens"] > 0, "the final checkpoint should record its training budget"
    assert len(model.a3_config.training["stages"]) == 3, "the final checkpoint should record the recipe"


def test_resume_continues_from_last_checkpoint(corpus, tmp_path):
    """A run stopped after its first save resumes at that step instead of starting over."""
    stages = [Stage("0-base", "base", 5, 3e-3, 1), Stage("1-ar", "ar", 10, 3e-3, 1)]
    cfg = tiny_cfg(corpus, tmp_path, [Stage("0-base", "base", 5, 3e-3, 1), Stage("1-ar", "ar", 5, 3e-3, 1)])
    train(cfg)  # stands in for a run that stopped after step 5 of stage 1
    prog = json.loads((tmp_path / "last" / "progress.json").read_text())
    assert prog == {**prog, "stage": 2, "step": 0, "a3": True}, f"last/ should mark the end of stage 1: {prog}"
    # a longer recipe: the same out dir now resumes inside stage 1 at its step 5
    (tmp_path / "last" / "progress.json").write_text(json.dumps({**prog, "stage": 1, "step": 5}))
    n_before = len(metrics(tmp_path))
    train(tiny_cfg(corpus, tmp_path, stages))
    new = metrics(tmp_path)[n_before:]
    steps = [r["step"] for r in new if "loss" in r]
    assert steps == list(range(6, 11)), f"resumed run should do steps 6..10 of stage 1 only, did {steps}"
    assert new[0]["tokens"] > prog["tokens"], "token count should continue from the checkpoint"


def test_lr_schedule_warms_up_then_decays():
    """Warm-up rises linearly to the peak, cosine falls to 10% of it at the end."""
    st = Stage("s", "ar", 100, 1.0, 10)
    assert lr_at(0, st) == pytest.approx(0.1), "first warm-up step is peak/warmup"
    assert lr_at(9, st) == pytest.approx(1.0), "warm-up ends at the peak"
    assert lr_at(99, st) == pytest.approx(0.1, abs=1e-3), "cosine ends at 10% of the peak"
    lrs = [lr_at(s, st) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:])), "after warm-up the rate never rises"


def test_train_state_checkpoint_is_loadable_as_a3(corpus, tmp_path):
    """out/last during A3 stages is an A3 checkpoint whose logits are finite."""
    train(tiny_cfg(corpus, tmp_path, [Stage("0-base", "base", 2, 3e-3, 1), Stage("1-ar", "ar", 5, 3e-3, 1)]))
    m = A3Model.from_pretrained(tmp_path / "last")
    ids = torch.randint(4, 50, (1, 10))
    ids[0, 0] = 0
    out = m(ids, torch.arange(10)[None])
    assert torch.isfinite(out.logits[0, 1:]).all(), "logits of a reloaded training checkpoint should be finite"


def test_max_seconds_stops_resumably_and_the_rerun_finishes(corpus, tmp_path):
    """With max_seconds the run saves out/last and returns None mid-recipe; the same command then
    resumes there and finishes with the steps it had left."""
    stages = [Stage("0-base", "base", 4, 3e-3, 1), Stage("1-ar", "ar", 6, 3e-3, 1)]
    cfg = tiny_cfg(corpus, tmp_path, stages)
    cfg.max_seconds = 1e-9  # out of time after the first step
    assert train(cfg) is None, "a run out of time should return None, not a final checkpoint"
    prog = json.loads((tmp_path / "last" / "progress.json").read_text())
    assert (prog["stage"], prog["step"]) == (0, 1), f"last/ should hold stage 0 step 1: {prog}"
    assert not (tmp_path / "final").exists(), "no final checkpoint before the recipe ends"
    cfg.max_seconds = 0.0
    final = train(cfg)
    steps = [(r["stage"], r["step"]) for r in metrics(tmp_path) if "loss" in r]
    assert steps == [("0-base", s) for s in range(1, 5)] + [("1-ar", s) for s in range(1, 7)], \
        f"every step exactly once across the stop and the rerun: {steps}"
    assert final is not None and (final / "config.json").is_file(), "the rerun should write final/"


def test_conditional_loss_leaves_out_the_first_group():
    """score_first=False: the loss is the mean exact -log p over the tokens outside each row's first
    group (token_logprobs as the oracle); with it on, every real token counts."""
    model = make_a3()
    ids = torch.randint(3, 99, (3, 24))
    ids[:, 0] = 0
    g = grouping_batch(make_sampler("infill"), 3, 24, random.Random(1))
    lp = model.token_logprobs(ids, g)  # (3, 24), 0 at the BOS
    first = g[:, 1:].min(dim=1, keepdim=True).values
    keep = (g != first)
    keep[:, 0] = False
    assert 0 < keep.sum() < 3 * 23, "the infilling grouping should have a visible first group and blanks"
    with torch.no_grad():
        cond = stage_loss(model, ids, g, score_first=False).item()
        full = stage_loss(model, ids, g).item()
    assert cond == pytest.approx(-(lp[keep]).sum().item() / keep.sum().item(), rel=1e-5), \
        "the conditional loss should average -log p over the tokens after the first group only"
    assert full == pytest.approx(-lp[:, 1:].sum().item() / (3 * 23), rel=1e-5), \
        "the full loss should average over every token but the BOS"


def test_stage_score_first_false_trains_and_records_it(corpus, tmp_path):
    """A stage with score_first=False trains and is evaluated, and the flag lands in the final
    checkpoint's recipe."""
    stages = [Stage("0-base", "base", 5, 3e-3, 1), Stage("3-cond", "infill", 4, 3e-3, 1, score_first=False)]
    final = train(tiny_cfg(corpus, tmp_path, stages))
    ev = [r["eval"] for r in metrics(tmp_path) if r.get("stage") == "3-cond" and "eval" in r]
    assert ev and {"nll", "nll_ar"} <= set(ev[-1]), f"the stage should be evaluated: {ev}"
    recipe = A3Model.from_pretrained(final).a3_config.training["stages"]
    assert recipe[-1]["score_first"] is False, f"the recipe should record the conditional loss: {recipe[-1]}"


def test_shipped_recipe_is_stage0_then_the_from_base_config():
    """configs/austen_tiny.json (one run) is stage 0 followed by exactly the A3 stages of
    configs/experiments/austen_tiny_from_shipped_base.json, the run that made assets/a3-austen-tiny from the base."""
    root = Path(__file__).resolve().parents[1] / "configs"
    full = json.loads((root / "austen_tiny.json").read_text())
    from_base = json.loads((root / "experiments" / "austen_tiny_from_shipped_base.json").read_text())
    assert full["stages"][0]["sampler"] == "base", "the one-run recipe starts with stage 0"
    assert full["stages"][1:] == from_base["stages"], "the A3 stages must be the ones the shipped run used"
    assert from_base["base_model"] == "assets/austen-base-tiny", "the shipped run started from the shipped base"
    for k in ("seq_len", "batch_size", "n_layer", "hidden", "n_head", "n_kv_head", "intermediate", "data_dir"):
        assert full[k] == from_base[k], f"{k} differs between the one-run recipe and the from-base run"


def test_every_config_parses_and_experiments_write_their_own_folder():
    """configs/*.json (shipped recipes) and configs/experiments/*.json (what differs, in the name)
    all load as TrainConfig, pass the recipe checks, and no two of them share an output folder."""
    from model.training.recipe import check

    root = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted(root.glob("*.json")) + sorted((root / "experiments").glob("*.json"))
    outs = {}
    for p in paths:
        cfg = TrainConfig.from_json(p)
        check(cfg)
        assert cfg.out_dir not in outs, f"{p.name} and {outs.get(cfg.out_dir)} both write to {cfg.out_dir}"
        outs[cfg.out_dir] = p.name
    assert len(list(root.glob("*.json"))) >= 3, "the shipped recipes stay at the top of configs/"
