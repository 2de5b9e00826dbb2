"""The masked-diffusion baseline: bidirectional attention, masking invariants, loss, ELBO, unmasking,
checkpoints, and the trainer's diffusion stage.

- attention is really bidirectional (a later token moves an earlier position), and with the
  annealing ratio at 0 it is the base causal LM exactly (shifted head reused as is);
- the BOS and padding are never masked; the loss is the 1/t-weighted CE of masked positions only;
- the ELBO bound is finite, >= 0, seeded, and exact for a single blank;
- unmasking keeps visible tokens, fills every blank, and costs exactly `steps` forwards;
- a few diffusion steps from a trained base lower the loss; the checkpoint reloads.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model.baselines.diffusion import DiffusionLM
from model.training.loop import Stage, TrainConfig, anneal_ratio, stage_kind, train

MASK = 3  # <mask> in the project tokenizers; the tiny test models keep 0-2 for BOS / EOS / PAD


@pytest.fixture
def dlm(make_backbone) -> DiffusionLM:
    return DiffusionLM(make_backbone("llama"), mask_token_id=MASK).eval()


def _ids(T: int, B: int = 1, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 99, (B, T), generator=gen)
    ids[:, 0] = 0
    return ids


# ----------------------------------------------------------------------------------------------
# the forward


def test_attention_is_bidirectional(dlm):
    """Changing a later token moves an earlier position's state; in the base causal LM it does not."""
    ids = _ids(12)
    other = ids.clone()
    other[0, 9] = 4 + (ids[0, 9] - 3) % 95
    with torch.no_grad():
        moved = (dlm.hidden(ids) - dlm.hidden(other))[0, 2].abs().max().item()
        causal = (dlm.base(ids).logits - dlm.base(other).logits)[0, 2].abs().max().item()
    assert moved > 1e-3, f"position 2 should see position 9 under bidirectional attention (moved {moved:.1e})"
    assert causal == 0.0, "sanity: the base causal LM must not see the future"


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_ratio_zero_is_the_base_causal_lm_shifted(make_backbone, impl):
    """attn_ratio 0 (start of annealing) is the causal mask: logits[i] == base logits[i-1]."""
    base = make_backbone("llama", attn_implementation=impl)
    dlm = DiffusionLM(base, mask_token_id=MASK).eval()
    ids = _ids(10, B=2)
    with torch.no_grad():
        got = dlm.logits(ids, attn_ratio=0.0)
        ref = base(ids).logits
    diff = (got[:, 1:] - ref[:, :-1]).abs().max().item()
    assert diff < 1e-5, f"row i should be the base's prediction from position i-1 ({impl}); max diff {diff:.1e}"


def test_padding_is_invisible(dlm):
    """Right padding: real positions do not depend on what the pads hold."""
    ids = _ids(12, B=1)
    am = torch.ones(1, 12, dtype=torch.long)
    am[0, 8:] = 0
    other = ids.clone()
    other[0, 8:] = 5
    with torch.no_grad():
        diff = (dlm.hidden(ids, am) - dlm.hidden(other, am))[0, :8].abs().max().item()
    assert diff < 1e-6, f"padding should be invisible to real positions; moved them by {diff:.1e}"


# ----------------------------------------------------------------------------------------------
# masking and the loss


def test_bos_and_padding_never_masked(dlm):
    """Even at t ~ 1 the BOS and padding stay; every other real token is masked."""
    ids = _ids(16, B=3)
    am = torch.ones(3, 16, dtype=torch.long)
    am[1, 10:] = 0
    out = dlm(ids, am, t=torch.full((3,), 0.999999), generator=torch.Generator().manual_seed(0))
    assert not out.masked[:, 0].any(), "the BOS must never be masked"
    assert not out.masked[1, 10:].any(), "padding must never be masked"
    assert out.masked[0, 1:].all() and out.masked[1, 1:10].all(), "at t ~ 1 every real non-BOS token is masked"
    assert (out.noisy_ids[out.masked] == MASK).all(), "masked positions must hold the mask id"
    assert torch.equal(out.noisy_ids[~out.masked], ids[~out.masked]), "unmasked positions keep their tokens"


def test_masking_rate_follows_t(dlm):
    """The fraction masked is about t, per sequence."""
    ids = _ids(64, B=2)
    out = dlm(ids, t=torch.tensor([0.2, 0.8]), generator=torch.Generator().manual_seed(0))
    frac = out.masked[:, 1:].float().mean(1)
    assert abs(frac[0] - 0.2) < 0.12 and abs(frac[1] - 0.8) < 0.12, f"masked fractions {frac.tolist()} should be ~ t"


def test_loss_is_weighted_ce_of_masked_positions_only(dlm):
    """loss == sum over masked i of CE(x_i | noisy) / t, over all real non-BOS tokens; unmasked
    targets do not enter it."""
    ids = _ids(20, B=2)
    t = torch.tensor([0.3, 0.6])
    out = dlm(ids, t=t, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logp = torch.log_softmax(dlm.logits(out.noisy_ids), -1)
    ce = -logp.gather(-1, ids[..., None]).squeeze(-1)  # (B, T)
    ref = ((ce * out.masked) / t[:, None]).sum() / (2 * 19)
    assert out.masked.any(), "sanity: some position should be masked"
    assert torch.allclose(out.loss, ref, atol=1e-5), f"loss {out.loss.item():.5f} != reference {ref.item():.5f}"


def test_loss_is_seeded_and_backpropagates(dlm):
    """Same generator seed, same loss; gradients reach the embeddings."""
    ids = _ids(16, B=2)
    a = dlm(ids, generator=torch.Generator().manual_seed(7)).loss
    b = dlm(ids, generator=torch.Generator().manual_seed(7)).loss
    assert a.item() == b.item(), "the loss should be reproducible from the generator seed"
    a.backward()
    g = dlm.base.get_input_embeddings().weight.grad
    assert g is not None and g.abs().sum() > 0, "the loss should backpropagate into the base"


def test_annealed_mask_opens_gradually(dlm):
    """attn_ratio r opens about r of the future keys and always keeps the causal part."""
    bias = dlm.attention_bias(1, 40, attn_ratio=0.5, generator=torch.Generator().manual_seed(0))[0, 0]
    assert bias.dtype == torch.bool, "SDPA takes a boolean mask"
    assert bias.tril().sum() == 40 * 41 // 2, "the causal part must stay open"
    frac = bias.triu(1).sum().item() / (40 * 39 / 2)
    assert 0.35 < frac < 0.65, f"about half of the future keys should be open, got {frac:.2f}"


# ----------------------------------------------------------------------------------------------
# likelihood


def test_elbo_is_finite_nonnegative_and_seeded(dlm):
    ids = _ids(14, B=2)
    blanks = torch.zeros(2, 14, dtype=torch.bool)
    blanks[0, 5:9] = True
    blanks[1, 2:12] = True
    a = dlm.elbo_nll(ids, blanks, n_samples=6, seed=1)
    b = dlm.elbo_nll(ids, blanks, n_samples=6, seed=1)
    assert a.shape == (2,) and torch.isfinite(a).all() and (a >= 0).all(), f"ELBO bound should be finite, >= 0: {a}"
    assert torch.equal(a, b), "the ELBO estimate should be reproducible from its seed"


def test_elbo_of_one_blank_is_its_exact_conditional(dlm):
    """With a single blank the bound is tight: -log p(x_i | everything else, x_i masked)."""
    ids = _ids(12)
    blanks = torch.zeros(1, 12, dtype=torch.bool)
    blanks[0, 6] = True
    noisy = ids.clone()
    noisy[0, 6] = MASK
    with torch.no_grad():
        ref = -torch.log_softmax(dlm.logits(noisy)[0, 6], -1)[ids[0, 6]]
    got = dlm.elbo_nll(ids, blanks, n_samples=3)[0]
    assert torch.allclose(got, ref, atol=1e-5), f"single-blank ELBO {got.item():.5f} != exact {ref.item():.5f}"


def test_elbo_refuses_bos_blank(dlm):
    ids = _ids(8)
    blanks = torch.zeros(1, 8, dtype=torch.bool)
    blanks[0, 0] = True
    with pytest.raises(ValueError, match="BOS"):
        dlm.elbo_nll(ids, blanks)


# ----------------------------------------------------------------------------------------------
# unmasking


@pytest.mark.parametrize("steps", [1, 3, 7])
def test_infill_keeps_context_fills_every_blank_in_steps_forwards(dlm, steps):
    ids = _ids(16)[0]
    blanks = torch.zeros(16, dtype=torch.bool)
    blanks[4:11] = True  # 7 blanks
    res = dlm.infill(ids, blanks, steps)
    out = torch.tensor(res.output_ids)
    assert torch.equal(out[~blanks], ids[~blanks]), "visible tokens must be kept"
    assert (out[blanks] != MASK).all(), "every blank must be filled with a real token"
    assert res.forward_passes == steps == len(res.steps), f"{steps} steps should cost {steps} forwards"
    filled = sorted(p for st in res.steps for p in st.positions)
    assert filled == list(range(4, 11)), "each blank is committed exactly once"
    # ceil(remaining / steps left) per step
    left = 7
    for s, st in enumerate(res.steps):
        k = math.ceil(left / (steps - s))
        assert len(st.positions) == k, f"step {s} should commit {k} blanks, committed {len(st.positions)}"
        left -= k
        assert st.pending == left
    assert all(0 < p <= 1 for st in res.steps for p in st.probs), "committed tokens carry their probability"


def test_infill_clips_steps_and_is_deterministic(dlm):
    ids = _ids(10)[0]
    blanks = torch.zeros(10, dtype=torch.bool)
    blanks[3:6] = True
    a, b = dlm.infill(ids, blanks, 50), dlm.infill(ids, blanks, 50)
    assert a.forward_passes == 3, "more steps than blanks: one blank per step, 3 forwards"
    assert a.output_ids == b.output_ids, "greedy unmasking is deterministic"


def test_infill_commits_the_most_confident_first(dlm):
    """The first step of a 2-step fill commits the blanks whose greedy token is most probable."""
    ids = _ids(12)[0]
    blanks = torch.zeros(12, dtype=torch.bool)
    blanks[3:9] = True
    x = ids.clone()
    x[blanks] = MASK
    with torch.no_grad():
        conf = torch.softmax(dlm.logits(x[None])[0, 3:9], -1).max(-1).values
    want = sorted((conf.topk(3).indices + 3).tolist())
    first = dlm.infill(ids, blanks, 2).steps[0]
    assert first.positions == want, f"first step committed {first.positions}, the 3 most confident are {want}"


def test_infill_refuses_bad_requests(dlm):
    ids = _ids(8)[0]
    blanks = torch.zeros(8, dtype=torch.bool)
    with pytest.raises(ValueError, match="no blank"):
        dlm.infill(ids, blanks, 2)
    blanks[2] = True
    with pytest.raises(ValueError, match="steps"):
        dlm.infill(ids, blanks, 0)


def test_mask_id_outside_vocab_is_refused(make_backbone):
    with pytest.raises(ValueError, match="vocabulary"):
        DiffusionLM(make_backbone("llama"), mask_token_id=500)


# ----------------------------------------------------------------------------------------------
# checkpoints and the trainer


def test_checkpoint_round_trip(dlm, tmp_path):
    dlm.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["diffusion"]["mask_token_id"] == MASK, "config.json should carry the diffusion section"
    back = DiffusionLM.from_pretrained(tmp_path)
    ids = _ids(9)
    with torch.no_grad():
        diff = (back.logits(ids) - dlm.logits(ids)).abs().max().item()
    assert diff < 1e-6, f"reloaded model should give the same logits (diff {diff:.1e})"
    with pytest.raises(ValueError, match="not a diffusion checkpoint"):
        cfg.pop("diffusion")
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        DiffusionLM.from_pretrained(tmp_path)


def test_stage_specs():
    assert [stage_kind(s) for s in ("base", "ar", "mix", "diffusion", "diffusion:50")] == \
        ["base", "a3", "a3", "diffusion", "diffusion"]
    assert anneal_ratio("diffusion", 0) == 1.0, "plain 'diffusion' is full attention from the start"
    assert anneal_ratio("diffusion:10", 0) == 0.0 and anneal_ratio("diffusion:10", 5) == 0.5
    assert anneal_ratio("diffusion:10", 50) == 1.0
    with pytest.raises(ValueError, match="diffusion:N"):
        anneal_ratio("diffusion:x", 0)


def _cfg(corpus, out, stages, **kw):
    return TrainConfig(data_dir=str(corpus), out_dir=str(out), mixed_precision="no", seq_len=32, batch_size=8, n_layer=2, hidden=32,
                       n_head=4, n_kv_head=2, intermediate=64, eval_every=10, eval_rows=8, save_every=10,
                       seed=0, stages=stages, **kw)


def _metrics(out: Path):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_diffusion_stage_after_base_lowers_loss_and_resumes(corpus, tmp_path):
    """Stage 0 then a diffusion stage: base/ kept, held-out ELBO bound falls, final/ is a
    DiffusionLM, and --base-model starts a diffusion run from base/ directly."""
    stages = [Stage("0-base", "base", 30, 3e-3, 3), Stage("d", "diffusion:5", 20, 3e-3, 2)]
    final = train(_cfg(corpus, tmp_path / "a", stages))
    recs = _metrics(tmp_path / "a")
    ev = [r["eval"]["nll_bound"] for r in recs if r.get("stage") == "d" and "eval" in r]
    assert len(ev) == 2 and ev[-1] < ev[0], f"held-out ELBO bound should fall during the diffusion stage: {ev}"
    assert (tmp_path / "a" / "base" / "config.json").is_file(), "the AR base should be kept in out/base"
    m = DiffusionLM.from_pretrained(final)
    assert m.mask_id == 3 and m.diffusion_config.training["tokens"] > 0, "final/ should record mask id and budget"
    prog = json.loads((tmp_path / "a" / "last" / "progress.json").read_text())
    assert prog["diffusion"] is True and prog["a3"] is False, f"progress should mark a diffusion run: {prog}"
    # the real recipe: a separate run from the saved base, same budget, resumable
    cfg = _cfg(corpus, tmp_path / "b", [Stage("d", "diffusion", 10, 3e-3, 2)],
               base_model=str(tmp_path / "a" / "base"))
    train(cfg)
    first = [r["loss"] for r in _metrics(tmp_path / "b") if "loss" in r]
    assert len(first) == 10
    cfg.stages = [Stage("d", "diffusion", 15, 3e-3, 2)]
    prog = json.loads((tmp_path / "b" / "last" / "progress.json").read_text())
    (tmp_path / "b" / "last" / "progress.json").write_text(json.dumps({**prog, "stage": 0, "step": 10}))
    train(cfg)
    steps = [r["step"] for r in _metrics(tmp_path / "b") if "loss" in r][10:]
    assert steps == list(range(11, 16)), f"the resumed diffusion run should do steps 11..15, did {steps}"


def test_diffusion_and_a3_stages_do_not_mix(corpus, tmp_path):
    stages = [Stage("0-base", "base", 2, 3e-3, 1), Stage("1-ar", "ar", 2, 3e-3, 1), Stage("d", "diffusion", 2, 3e-3, 1)]
    with pytest.raises(ValueError, match="cannot follow"):
        train(_cfg(corpus, tmp_path, stages))


def test_diffusion_config_matches_the_a3_budget():
    """configs/austen_tiny_diffusion.json: same model, data, batch and sequence length as the A3
    recipes, from their shared stage-0 base, with as many steps as the short A3 recipe's stages
    (configs/experiments/austen_tiny_short_stage3.json, the budget of the equal-budget comparison)."""
    root = Path(__file__).resolve().parents[1] / "configs"
    full = json.loads((root / "austen_tiny.json").read_text())
    short = json.loads((root / "experiments" / "austen_tiny_short_stage3.json").read_text())
    d = json.loads((root / "austen_tiny_diffusion.json").read_text())
    for k in ("data_dir", "seq_len", "batch_size", "n_layer", "hidden", "n_head", "n_kv_head", "intermediate"):
        assert d[k] == full[k] == short[k], f"{k} differs between the A3 recipes and the diffusion one"
    assert full["stages"][0] == short["stages"][0], "both A3 recipes share one stage 0 (assets/austen-base-tiny)"
    assert d["base_model"] == full["out_dir"] + "/base", "the diffusion run must start from the stage-0 base"
    a3_steps = sum(s["steps"] for s in short["stages"] if s["sampler"] != "base")
    assert sum(s["steps"] for s in d["stages"]) == a3_steps, "same token budget: as many steps as the A3 stages"
    assert all(stage_kind(s["sampler"]) == "diffusion" for s in d["stages"])

