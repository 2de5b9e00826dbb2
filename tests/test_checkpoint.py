"""Checkpoints: an A3 directory round-trips exactly and is still a plain transformers checkpoint."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaForCausalLM, PreTrainedTokenizerFast

from model.core.a3 import A3Config, A3Model, W_KEY
from model.core.checkpoint import load_tokenizer


def _batch():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 99, (2, 12), generator=gen)
    g = torch.randperm(12, generator=gen).expand(2, 12) // 3
    return ids, g


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_round_trip(backbone, tied, tmp_path, make_backbone):
    """save_pretrained -> from_pretrained: identical w and logits; the a3 section is in config.json."""
    model = A3Model(make_backbone(backbone, tie_word_embeddings=tied), A3Config(context_grouping="causal",
                                                                           training={"stage": 3}))
    with torch.no_grad():
        model.w.add_(0.5)  # a trained w differs from the init the loader would draw
    model.save_pretrained(tmp_path, tokenizer=None)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg.get("a3", {}).get("context_grouping") == "causal", f"config.json lacks the a3 section: {cfg.get('a3')}"
    assert cfg["a3"]["training"] == {"stage": 3}, "the training recipe did not reach config.json"
    loaded = A3Model.from_pretrained(tmp_path)
    assert torch.equal(loaded.w, model.w), "w changed in the round trip"
    assert loaded.a3_config == model.a3_config, f"a3 config changed: {loaded.a3_config} vs {model.a3_config}"
    ids, g = _batch()
    with torch.no_grad():
        diff = (loaded(ids, g).logits - model(ids, g).logits)[:, 1:].abs().max().item()
    assert diff == 0.0, f"logits changed in the round trip by {diff:.2e}"
    if tied:
        head, emb = loaded.base.lm_head.weight, loaded.base.get_input_embeddings().weight
        assert head.data_ptr() == emb.data_ptr(), "tied embeddings came back untied"


def test_backbone_loads_alone_with_transformers(backbone, tmp_path, make_backbone):
    """The directory is a valid checkpoint of the base architecture; w is simply ignored."""
    model = A3Model(make_backbone(backbone))
    model.save_pretrained(tmp_path)
    model_cls = type(model.base)
    ids = _batch()[0]
    for cls in (model_cls, AutoModelForCausalLM):
        base = cls.from_pretrained(tmp_path).eval()
        assert isinstance(base, model_cls), f"{cls.__name__} loaded a {type(base).__name__}"
        with torch.no_grad():
            diff = (base(ids).logits - model.base(ids).logits).abs().max().item()
        assert diff == 0.0, f"{cls.__name__}.from_pretrained gives different base logits ({diff:.2e})"


def test_llama_loads_llama_checkpoint(tmp_path, make_backbone):
    A3Model(make_backbone("llama")).save_pretrained(tmp_path)
    base = LlamaForCausalLM.from_pretrained(tmp_path)
    assert base.config.vocab_size == 99, "LlamaForCausalLM did not load the saved config"


def test_plain_checkpoint_is_refused(tmp_path, make_backbone):
    make_backbone("llama").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="plain causal LM, not an A3 checkpoint; use A3Model.from_base"):
        A3Model.from_pretrained(tmp_path)
    a3 = A3Model.from_base(str(tmp_path))
    assert a3.a3_config.base_model == str(tmp_path), "from_base must record where the backbone came from"


def test_checkpoint_without_w_is_refused(tmp_path, make_backbone):
    A3Model(make_backbone("llama")).save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop(W_KEY)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="incomplete"):
        A3Model.from_pretrained(tmp_path)


def test_w_starts_at_embedding_scale(make_backbone):
    """w ~ the spread of the token embeddings, not N(0, 1) (about 50x too large)."""
    base = make_backbone("llama", initializer_range=0.02)  # the usual init
    w = A3Model(base).w.detach()
    emb_std = base.get_input_embeddings().weight.std().item()
    ratio = w.std().item() / emb_std
    assert 0.5 <= ratio <= 2.0, f"w std {w.std().item():.4f} is {ratio:.2f}x the embedding std {emb_std:.4f}"
    assert w.std().item() < 0.2, f"w std {w.std().item():.3f} is near N(0, 1)"
    assert w.dtype == base.get_input_embeddings().weight.dtype, "w must take the embedding dtype"


def test_tokenizer_saved_beside_the_weights(tmp_path, make_backbone):
    vocab = {"<bos>": 0, "<eos>": 1, "<pad>": 2, **{f"w{i}": i for i in range(3, 99)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    A3Model(make_backbone("llama")).save_pretrained(tmp_path, tokenizer=tok)
    back = load_tokenizer(tmp_path)
    assert back("w5 w17")["input_ids"] == [5, 17], "the saved tokenizer encodes differently"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_from_base_on_cuda_matches_cpu(make_backbone):
    """A base that already lives on the GPU (stage 0 trained there) gets the same w as on the CPU."""
    base = make_backbone("llama")
    w_cpu = A3Model(base).w.detach().clone()
    w_gpu = A3Model(base.to("cuda")).w.detach()
    assert w_gpu.device.type == "cuda", "w should live with the base"
    assert torch.allclose(w_gpu.cpu(), w_cpu), "w's initial value must not depend on the device"
