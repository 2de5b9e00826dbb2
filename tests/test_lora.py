"""LoRA adapters: both streams use them, only LoRA + w train, save/load round-trips, the trainer runs them."""
import json

import pytest
import torch

from model.core.a3 import W_KEY, A3Model
from model.corpus.austen import train_tokenizer
from model.core.decode import DecodeConfig, run
from model.backbones.lora import ADAPTER, add_lora, adapter_section, is_adapter, load_a3, load_adapter, merge_lora, save_adapter
from model.training.loop import Stage, TrainConfig, train

from conftest import make_a3, make_base, write_corpus



def randomize_lora(model, seed=0, scale=0.05):
    """Give every LoRA B a non-zero value (a fresh adapter is exactly the base)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def rel_diff(a, b) -> float:
    """max |a - b| over max |b|: the tiny sharp test models have logits up to ~6, where fp32
    rounding of a reordered sum alone is ~1e-5 absolute."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()


def ids_and_groups(T=12, vocab=99, seed=1):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, T), generator=gen)
    ids[:, 0] = 0
    g = torch.stack([torch.arange(T), torch.tensor([0] + [1 + (i * 5) % 4 for i in range(T - 1)])])
    return ids, g


def test_fresh_adapter_is_the_base_and_only_lora_and_w_train():
    """B = 0 at start: same logits as without LoRA; trainable = LoRA A/B of the targets + w."""
    plain, model = make_a3(), add_lora(make_a3(), r=4, alpha=8)
    ids, g = ids_and_groups()
    with torch.no_grad():
        assert torch.equal(plain(ids, g).logits, model(ids, g).logits), "a fresh adapter should not move the logits"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "w" in trainable, "w must stay trainable"
    assert all("lora_" in n for n in trainable - {"w"}), f"only LoRA weights and w may train: {sorted(trainable)[:5]}"
    cfg = model.config
    r, C, kv = 4, cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim
    per_layer = 2 * r * (C + C) + 2 * r * (C + kv)  # q, o: C -> C; k, v: C -> Hkv*D (A is r x in, B out x r)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == cfg.num_hidden_layers * per_layer + cfg.hidden_size, f"unexpected trainable count {n}"
    mlp = add_lora(make_a3(), r=4, mlp=True)
    assert {"gate_proj", "up_proj", "down_proj"} <= set(mlp.lora["targets"]), "mlp=True should adapt the MLP"


def test_both_streams_go_through_the_lora_layers():
    """A non-zero adapter moves the query logits and the content states, and unmerged == merged:
    two_stream_walk calls the wrapped modules in both streams."""
    model = randomize_lora(add_lora(make_a3(), r=4, alpha=8)).eval()
    plain = make_a3().eval()
    ids, g = ids_and_groups()
    with torch.no_grad():
        un = model(ids, g, content_out=True)
        ref = plain(ids, g, content_out=True)
        assert (un.logits - ref.logits).abs().max() > 1e-2, "LoRA should change the query stream's logits"
        assert (un.content - ref.content).abs().max() > 1e-2, "LoRA should change the content stream"
        # identity order: the content stream equals the adapted base model's own forward
        T = ids.shape[1]
        c = model(ids, torch.arange(T).expand(2, T), content_out=True).content
        diff = (c - model.base.model(ids).last_hidden_state).abs().max().item()
        assert diff < 1e-5, f"content stream should equal the adapted base in AR order, diff {diff:.2e}"
        merged = merge_lora(model)
        assert not is_adapter(merged), "merge_lora should leave plain Linear layers"
        assert type(merged.base.model.layers[0].self_attn.q_proj) is torch.nn.Linear, "q_proj should be plain again"
        mg = merged(ids, g, content_out=True)
    # float rounding differs (W x + s B A x vs (W + s B A) x): compare relative to the values' scale
    diff = max(rel_diff(un.logits, mg.logits), rel_diff(un.content, mg.content))
    assert diff < 1e-5, f"merged and unmerged models should agree, max relative diff {diff:.2e}"


def test_a_few_steps_change_only_lora_and_w():
    """Optimizer steps on the A3 loss move LoRA B and w; every base weight stays bit-identical."""
    torch.manual_seed(0)
    model = add_lora(make_a3(), r=4, alpha=8).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, g = ids_and_groups()
    for _ in range(3):
        loss = model(ids, g, labels=A3Model.default_labels(ids)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "w" in changed and any("lora_B" in n for n in changed), f"LoRA and w should move: {sorted(changed)[:4]}"
    assert all(n == "w" or "lora_" in n for n in changed), f"base weights moved: {[n for n in changed if 'lora_' not in n and n != 'w']}"


def test_save_and_load_round_trip(tmp_path):
    """save_adapter writes LoRA + w only; load_adapter(merge=False) is exact, merged within 1e-5."""
    base_dir = tmp_path / "base"
    make_base().save_pretrained(base_dir)
    model = randomize_lora(add_lora(A3Model.from_base(base_dir), r=4, alpha=8, mlp=True)).eval()
    with torch.no_grad():
        model.w.add_(0.1)  # a trained w differs from the init
    out = save_adapter(model, tmp_path / "adapter", str(base_dir))
    a3 = adapter_section(out)
    assert a3["lora"]["r"] == 4 and a3["base_model"] == str(base_dir), f"config a3 section: {a3}"
    from safetensors.torch import load_file
    keys = set(load_file(str(out / ADAPTER)))
    assert W_KEY in keys and all(k == W_KEY or "lora_" in k for k in keys), f"adapter holds more than LoRA + w: {keys}"
    ids, g = ids_and_groups()
    with torch.no_grad():
        ref = model(ids, g).logits
        exact = load_adapter(out, merge=False)(ids, g).logits
        merged = load_adapter(out)(ids, g).logits
    assert torch.equal(exact, ref), "an unmerged reload should reproduce the logits exactly"
    diff = rel_diff(merged, ref)
    assert diff < 1e-5, f"the merged reload should match within 1e-5 (relative), diff {diff:.2e}"


def test_load_adapter_refuses_a_full_checkpoint(tmp_path):
    make_a3().save_pretrained(tmp_path / "full")
    with pytest.raises(ValueError, match="not an A3 adapter"):
        load_adapter(tmp_path / "full")


def test_an_incomplete_adapter_is_refused(tmp_path):
    """The adapter files are read by core/checkpoint.py, which names what a folder lacks."""
    from safetensors.torch import load_file, save_file
    base_dir = tmp_path / "base"
    make_base().save_pretrained(base_dir)
    out = save_adapter(add_lora(A3Model.from_base(base_dir), r=4, alpha=8), tmp_path / "adapter", str(base_dir))
    state = load_file(str(out / ADAPTER))
    (out / ADAPTER).unlink()
    with pytest.raises(ValueError, match=f"has no {ADAPTER}; the adapter is incomplete"):
        load_adapter(out)
    save_file({k: v for k, v in state.items() if k != W_KEY}, str(out / ADAPTER))
    with pytest.raises(ValueError, match=f"has no {W_KEY}; the adapter is incomplete"):
        load_adapter(out)


# ----------------------------------------------------------------------------------------------
# the trainer with `lora`: a tiny pretrained base on disk, a synthetic corpus


@pytest.fixture(scope="module")
def lora_setup(tmp_path_factory):
    """(corpus dir, base dir): the base has its own tokenizer, unlike the corpus's prepared one."""
    d = tmp_path_factory.mktemp("lora")
    # the corpus's own tokenizer (vocab 280) differs from the base's: the trainer must use the base's
    corpus, lines = write_corpus(d / "corpus", n_lines=300, n_train=260, vocab_size=280)
    tok = train_tokenizer(lines[:260], vocab_size=300)
    base = make_base(vocab_size=len(tok), tie_word_embeddings=True)
    base.save_pretrained(d / "base")
    tok.save_pretrained(d / "base")
    return corpus, d / "base"


def lora_cfg(corpus, base, out, stages, **kw):
    return TrainConfig(data_dir=str(corpus), out_dir=str(out), mixed_precision="no", seq_len=32, batch_size=8, base_model=str(base),
                       lora={"r": 4, "alpha": 8}, eval_every=1000, eval_rows=8, save_every=5, seed=0,
                       stages=stages, **kw)


def test_trainer_lora_lowers_loss_and_saves_an_adapter(lora_setup, tmp_path):
    """A3 stages with `lora`: loss falls, last/ and final/ are adapters, final/ decodes after loading."""
    corpus, base = lora_setup
    stages = [Stage("1-ar", "ar", 15, 2e-2, 2), Stage("3-mix", "mix", 5, 2e-2, 1)]
    final = train(lora_cfg(corpus, base, tmp_path, stages))
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if "loss" in r and r["stage"] == "1-ar"]
    assert min(losses[-3:]) < losses[0] - 0.3, f"LoRA training should lower the loss: {losses[0]:.2f} -> {losses[-3:]}"
    for ck in (tmp_path / "last", final):
        assert adapter_section(ck) is not None, f"{ck} should be an adapter checkpoint"
        assert not (ck / "model.safetensors").exists(), f"{ck} should not hold the base weights"
    model, tok = load_a3(final)
    assert model.a3_config.training["tokens"] > 0, "the adapter should record its training budget"
    assert len(tok) == 300, "the saved tokenizer should be the base's, not the corpus's"
    ids = [tok.bos_token_id] + tok.encode("the cat sat on a mat and a dog ran to the park")
    mask = [False] * len(ids)
    mask[4:7] = [True] * 3
    trace = run(model, ids, mask, DecodeConfig(), tok)
    assert sum(len(s.positions) for s in trace.steps) == 3, "decoding over the loaded adapter should fill the blanks"


def test_trainer_lora_resumes_from_an_adapter_checkpoint(lora_setup, tmp_path):
    """A stopped LoRA run resumes inside its stage from last/ (base reloaded, adapter unmerged)."""
    corpus, base = lora_setup
    train(lora_cfg(corpus, base, tmp_path, [Stage("1-ar", "ar", 5, 1e-2, 1)]))
    prog = json.loads((tmp_path / "last" / "progress.json").read_text())
    (tmp_path / "last" / "progress.json").write_text(json.dumps({**prog, "stage": 0, "step": 5}))
    n_before = len((tmp_path / "metrics.jsonl").read_text().splitlines())
    train(lora_cfg(corpus, base, tmp_path, [Stage("1-ar", "ar", 8, 1e-2, 1)]))
    new = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()[n_before:]]
    assert [r["step"] for r in new if "loss" in r] == [6, 7, 8], "the resumed run should do steps 6..8 only"


def test_trainer_lora_refuses_stage_zero(lora_setup, tmp_path):
    corpus, base = lora_setup
    with pytest.raises(ValueError, match="LoRA run"):
        train(lora_cfg(corpus, base, tmp_path, [Stage("0-base", "base", 2, 1e-3, 1), Stage("1-ar", "ar", 2, 1e-3, 1)]))


def test_shipped_lora_config_parses_and_applies():
    """configs/smollm2_a3_lora.json: a LoRA recipe over the SmolLM2 ref, A3 stages only, valid LoRA args."""
    cfg = TrainConfig.from_json("configs/smollm2_a3_lora.json")
    assert cfg.base_model == "smollm2-135m-gguf" and cfg.lora, "the recipe should train an adapter over SmolLM2"
    assert all(s.sampler != "base" for s in cfg.stages), "no stage 0 over a pretrained base"
    assert is_adapter(add_lora(make_a3(), **cfg.lora)), "the config's lora section should be add_lora arguments"
