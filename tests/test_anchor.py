"""Keeping a pretrained base's English while it learns A3: the corpus mix, left-to-right batches,
the KL anchor toward the base (adapter disabled) and starting from an existing adapter."""
import copy
import json
import random

import pytest
import torch
import torch.nn.functional as F

from conftest import make_a3, write_corpus
from model.backbones.lora import adapter_section, adapters_disabled, add_lora, load_adapter
from model.core.samplers import make_sampler
from model.training.loop import Stage, TrainConfig, batch_loss, train
from model.training.steps import TrainData, anchor_kl, stage_loss
from test_lora import lora_cfg, lora_setup, randomize_lora  # noqa: F401 (fixture)


def test_disabled_adapter_is_exactly_the_base():
    """adapters_disabled gives the base's own logits while a trained adapter is in place, and the
    adapter is back (and trainable) afterwards."""
    model = make_a3()
    base = copy.deepcopy(model.base)
    randomize_lora(add_lora(model, r=4, mlp=True))
    ids = torch.randint(3, 99, (2, 12))
    ids[:, 0] = 0
    with torch.no_grad():
        want = base(input_ids=ids).logits
        adapted = model.base(input_ids=ids).logits
        with adapters_disabled(model):
            off = model.base(input_ids=ids).logits
        back = model.base(input_ids=ids).logits
    assert not torch.allclose(adapted, want, atol=1e-4), "the randomized adapter should move the logits"
    assert torch.allclose(off, want, atol=1e-6), f"disabled adapter differs from the base by {(off - want).abs().max():.2e}"
    assert torch.equal(back, adapted), "the adapter must be back after the context"
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n), "LoRA weights must stay trainable"


def test_anchor_kl_matches_a_hand_computed_kl():
    """anchor_kl = mean over tokens 1..T-1 of sum_v p_base(v) log(p_base(v) / p_A3(v)), with p_base
    from the base before LoRA at position i-1 and p_A3 from A3's left-to-right logits at i; zero
    when A3 reproduces the base."""
    model = make_a3()
    base = copy.deepcopy(model.base)
    randomize_lora(add_lora(model, r=4))
    ids = torch.randint(3, 99, (2, 10))
    ids[:, 0] = 0
    g = torch.arange(10).expand(2, 10)
    with torch.no_grad():
        a3_logits = model(ids, g).logits
        p = F.softmax(base(input_ids=ids).logits[:, :-1], -1)
        q = F.softmax(a3_logits[:, 1:], -1)
        want = (p * (p.log() - q.log())).sum(-1).mean().item()
        got = anchor_kl(model, ids, a3_logits).item()
        same = anchor_kl(model, ids, torch.cat([a3_logits[:, :1], base(input_ids=ids).logits[:, :-1]], 1)).item()
    assert got == pytest.approx(want, rel=1e-4), f"anchor_kl {got} vs hand-computed {want}"
    assert abs(same) < 1e-5, f"KL of the base with itself should be 0, got {same}"


def test_ar_share_one_scores_left_to_right_with_the_anchor(lora_setup, tmp_path):
    """With ar_share=1 every batch is singleton groups left to right, and the loss is the left-to-
    right NLL plus anchor x KL (the oracle: stage_loss and anchor_kl called by hand)."""
    corpus, base = lora_setup
    cfg = lora_cfg(corpus, base, tmp_path, [Stage("3", "mix", 1, 1e-3, 1, ar_share=1.0, anchor=0.5)])
    model = randomize_lora(add_lora(make_a3(vocab_size=300), r=4))
    ids = torch.randint(3, 300, (3, 32))
    ids[:, 0] = 0

    class R:  # the loop's Run, reduced to what batch_loss reads
        rng, step = random.Random(0), 0
    R.cfg = cfg
    with torch.no_grad():
        got = batch_loss(model, cfg.stages[0], ids, make_sampler("mix"), R, None).item()
        g = torch.arange(32).expand(3, 32)
        nll, logits = stage_loss(model, ids, g, return_logits=True)
        want = (nll + 0.5 * anchor_kl(model, ids, logits)).item()
    assert got == pytest.approx(want, rel=1e-5), f"batch loss {got} vs left-to-right NLL + 0.5 KL {want}"


def test_data_mix_draws_rows_by_share(tmp_path):
    """Two corpora at 0.75 / 0.25: about that share of rows comes from each; eval rows from both."""
    a, _ = write_corpus(tmp_path / "a")
    b = tmp_path / "b"
    b.mkdir()
    (b / "train.txt").write_text(("cat " * 40 + "\n") * 300)
    (b / "eval.txt").write_text(("cat " * 40 + "\n") * 60)
    from model.corpus.austen import load_tokenizer
    tok = load_tokenizer(a)
    data = TrainData({str(a): 0.75, str(b): 0.25}, 16, tok, eval_rows=4)
    cat = tok.encode(" cat")[-1]  # "cat" (this small BPE spells " cat" as " " + "cat")
    rows = data.batch(random.Random(0), 2000)
    from_b = ((rows == cat).float().mean(1) > 0.4).float().mean().item()  # corpus b is " cat" over and over
    assert 0.21 < from_b < 0.29, f"{from_b:.3f} of the rows came from the 25% corpus"
    assert data.eval.shape[0] == 8, f"4 held-out rows from each corpus, got {data.eval.shape[0]}"


def test_lora_run_from_an_existing_adapter_with_mix_and_anchor(lora_setup, tmp_path):
    """init_adapter: the run starts from that adapter's weights; a mixed-corpus stage with
    ar_share and the anchor trains, and the final adapter records its corpora and its start."""
    corpus, base = lora_setup
    first = train(lora_cfg(corpus, base, tmp_path / "first", [Stage("1-ar", "ar", 3, 1e-2, 1)]))
    cfg = lora_cfg(corpus, base, tmp_path / "second", [Stage("3", "mix", 4, 1e-2, 1, ar_share=0.5, anchor=1.0)],
                   init_adapter=str(first), data_mix={str(corpus): 0.5, str(corpus / "copy"): 0.5})
    (corpus / "copy").mkdir(exist_ok=True)
    for f in ("train.txt", "eval.txt"):
        (corpus / "copy" / f).write_text((corpus / f).read_text())
    from model.training.models import initial_model
    start = initial_model(cfg, None)
    want = load_adapter(first, merge=False)
    assert all(torch.equal(a, b) for a, b in zip(start.parameters(), want.parameters())), \
        "the run should start from init_adapter's weights"
    final = train(cfg)
    rec = adapter_section(final)["training"]
    assert rec["init_adapter"] == str(first) and len(rec["corpora"]) == 2, f"recipe not recorded: {rec}"
    snap = adapter_section(tmp_path / "second" / "last")["training"]
    assert snap["init_adapter"] == str(first) and snap["stages"][0]["name"] == "3", \
        f"a snapshot records its own run, not the adapter it started from: {snap}"
    assert snap["tokens"] == rec["tokens"] and snap["snapshot_at"] == {"stage": 1, "step": 0}, snap
    losses = [json.loads(x) for x in (tmp_path / "second" / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in r for r in losses) == 4, "four steps should have run"


def test_bad_recipes_are_refused(lora_setup, tmp_path):
    corpus, base = lora_setup
    with pytest.raises(ValueError, match="sum to 1"):
        train(lora_cfg(corpus, base, tmp_path, [Stage("1", "ar", 1, 1e-3)], data_mix={str(corpus): 0.5}))
    with pytest.raises(ValueError, match="anchor"):
        train(TrainConfig(data_dir=str(corpus), out_dir=str(tmp_path), mixed_precision="no", stages=[Stage("1", "ar", 1, 1e-3, anchor=1.0)]))
    with pytest.raises(ValueError, match="must be an adapter checkpoint"):
        train(lora_cfg(corpus, base, tmp_path, [Stage("1", "ar", 1, 1e-3)], init_adapter=str(base)))
