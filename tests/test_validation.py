"""Bad input is refused at the API boundary with a ValueError that says what to change."""
from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from model.core.a3 import A3Model
from model.core.decode import DecodeConfig, run
from model.core.sampling import SamplingConfig

IDS = [0, 11, 12, 13, 14, 15, 16]
MASK = [False, False, True, True, False, True, False]  # blanks 2, 3, 5


def _decode(model, cfg=None, ids=IDS, mask=MASK):
    return run(model, ids, mask, cfg)


# ----------------------------------------------------------------------------------------------
# decoding requests

@pytest.mark.parametrize("ids, mask, fragment", [
    ([0], [False], "text is empty"),
    ([], [], "text is empty"),
    (IDS, [False] * len(IDS), "no blank"),
    (IDS, MASK[:-1], "one per token"),
    (IDS, [True] + MASK[1:], "BOS and cannot be a blank"),
])
def test_bad_text_or_blanks(a3_llama, ids, mask, fragment):
    with pytest.raises(ValueError, match=fragment):
        _decode(a3_llama, ids=ids, mask=mask)


def test_text_longer_than_the_model(a3_llama):
    n = a3_llama.config.max_position_embeddings + 1
    with pytest.raises(ValueError, match=f"{n} tokens long.*at most 128; shorten it"):
        _decode(a3_llama, ids=[0] + [5] * (n - 1), mask=[False] + [True] * (n - 1))


@pytest.mark.parametrize("custom, fragment", [
    ([[2], [3]], r"skips blank position\(s\) \[5\]"),
    ([[2, 3], [5, 3]], r"repeats blank position\(s\) \[3\]"),
    ([[2, 3], [5], [4]], r"position\(s\) \[4\] that are not blanks"),
    ([[2, 3, 5], [0]], r"position\(s\) \[0\] that are not blanks"),
    ([], "needs a non-empty list"),
    (None, "needs a non-empty list"),
    ([[2, 3, 5], []], "empty group"),
])
def test_bad_custom_order(a3_llama, custom, fragment):
    with pytest.raises(ValueError, match=fragment):
        _decode(a3_llama, DecodeConfig(strategy="custom", custom_groups=custom))


@pytest.mark.parametrize("cfg, fragment", [
    (DecodeConfig(strategy="zigzag"), "unknown strategy 'zigzag'; choose one of"),
    (DecodeConfig(group_size=0), "group size / k must be an integer >= 1"),
    (DecodeConfig(strategy="confidence", group_size=-2), "group size / k must be an integer >= 1"),
    (DecodeConfig(group_size=1.5), "group size / k must be an integer >= 1"),
    (DecodeConfig(strategy="left_to_right", threshold=0.5), "dynamic strategies only"),
    (DecodeConfig(strategy="custom", custom_groups=[[2, 3, 5]], threshold=0.5), "dynamic strategies only"),
    (DecodeConfig(strategy="confidence", threshold=0.0), r"threshold must be a probability in \(0, 1\]"),
    (DecodeConfig(strategy="margin", threshold=1.5), r"threshold must be a probability in \(0, 1\]"),
    (DecodeConfig(context="sideways"), "context grouping must be 'block' or 'causal'"),
    (DecodeConfig(n_alternatives=-1), "n_alternatives must be >= 0"),
])
def test_bad_decode_config(a3_llama, cfg, fragment):
    with pytest.raises(ValueError, match=fragment):
        _decode(a3_llama, cfg)


@pytest.mark.parametrize("sampling, fragment", [
    (SamplingConfig(do_sample=True, temperature=0.0), "temperature must be > 0 when sampling"),
    (SamplingConfig(do_sample=True, temperature=-1.0), "temperature must be > 0 when sampling"),
    (SamplingConfig(do_sample=True, temperature=float("nan")), "temperature must be a finite number"),
    (SamplingConfig(do_sample=True, temperature=1e4), r"use a value in \(0, 100\]"),
    (SamplingConfig(do_sample=True, top_p=0.0), r"top_p must be in \(0, 1\]"),
    (SamplingConfig(do_sample=True, top_p=1.5), r"top_p must be in \(0, 1\]"),
    (SamplingConfig(do_sample=True, top_k=-1), "top_k must be an integer >= 0"),
    (SamplingConfig(seed=-3), "seed must be a non-negative integer"),
])
def test_bad_sampling(a3_llama, sampling, fragment):
    with pytest.raises(ValueError, match=fragment):
        _decode(a3_llama, DecodeConfig(sampling=sampling))


def test_greedy_accepts_temperature_zero(a3_llama):
    """temperature only matters when sampling; greedy with temperature 0 is fine."""
    trace = _decode(a3_llama, DecodeConfig(sampling=SamplingConfig(do_sample=False, temperature=0.0)))
    assert len(trace.steps) == 3, "greedy decoding with temperature 0 must still run"


# ----------------------------------------------------------------------------------------------
# the model's forward


def test_group_ids_of_the_wrong_shape(a3_llama):
    ids = torch.tensor([IDS])
    with pytest.raises(ValueError, match=r"group_ids shape \(7,\) must equal input_ids shape \(1, 7\)"):
        a3_llama(ids, torch.arange(7))
    with pytest.raises(ValueError, match="must equal input_ids shape"):
        a3_llama(ids, torch.arange(6)[None])


def test_negative_group_ids_for_real_tokens(a3_llama):
    ids = torch.tensor([IDS])
    with pytest.raises(ValueError, match="group ids of real tokens must be >= 0"):
        a3_llama(ids, torch.tensor([[0, 1, -1, 2, 3, 4, 5]]))
    # the BOS and padding may carry any id
    am = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    out = a3_llama(ids, torch.tensor([[-7, 0, 1, 2, 3, -1, -1]]), am)
    assert torch.isfinite(out.logits[0, 1:5]).all(), "a valid grouping with odd BOS/padding ids must run"


def test_float_group_ids(a3_llama):
    with pytest.raises(ValueError, match="integer tensor"):
        a3_llama(torch.tensor([IDS]), torch.arange(7.0)[None])


# ----------------------------------------------------------------------------------------------
# backbones and paths


def test_unsupported_backbones():
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    with pytest.raises(ValueError, match="not a LLaMA-family causal LM"):
        A3Model(gpt2)


def test_sliding_window_backbone_is_refused(make_model):
    with pytest.raises(ValueError, match="sliding-window attention is not supported"):
        make_model("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=0)


def test_from_pretrained_missing_dir(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        A3Model.from_pretrained(tmp_path / "nowhere")
