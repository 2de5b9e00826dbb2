"""Shared fixtures: tiny seeded random LLaMA-family backbones wrapped as A3Model (CPU, no network).

`make_base(kind)` builds a LlamaForCausalLM or Qwen2ForCausalLM with the transformers test sizes;
`make_a3(kind)` wraps it. Fixtures: `backbone` parametrizes a test over both families, `a3` is a
fresh model of that family, `a3_llama` one over LLaMA only, and `make_model` / `make_backbone`
hand out the factories for other vocabularies, seeds or configs.
Weights use initializer_range=0.3 by default: with the usual 0.02 a tiny random model is nearly
uniform over its vocabulary, and invariants like "the logits did not move" or "probabilities sum
to 1" would pass almost regardless of the math. At 0.3 the max token probability is ~0.1-0.6.
"""
from __future__ import annotations

import os
import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from model.core.a3 import A3Model

BACKBONES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
SHARP = 0.3  # initializer_range of the test models (see the module docstring)

# The app fetches the SmolLM2 base from PyPI at start when it is missing: never in a test.
os.environ["A3_FETCH_BASE"] = "0"

# Ops on these models take microseconds; with several intra-op threads on a busy machine they
# spend far longer waiting for one another than computing (seen: 100x slower decoding).
torch.set_num_threads(1)


def tiny_config(kind: str = "llama", vocab_size: int = 99, initializer_range: float = SHARP, **kw):
    """The transformers test sizes, GQA (4 query heads over 2 key/value heads)."""
    config_cls, _ = BACKBONES[kind]
    args = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, intermediate_size=37, max_position_embeddings=128,
                initializer_range=initializer_range, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    args.update(kw)
    return config_cls(**args)


def make_base(kind: str = "llama", seed: int = 0, **kw):
    """A seeded random causal LM in eval mode, fp32."""
    _, model_cls = BACKBONES[kind]
    torch.manual_seed(seed)
    return model_cls(tiny_config(kind, **kw)).eval()


def make_a3(kind: str = "llama", seed: int = 0, **kw) -> A3Model:
    return A3Model(make_base(kind, seed, **kw)).eval()


@pytest.fixture(params=sorted(BACKBONES))
def backbone(request) -> str:
    """Parametrize a test over the LLaMA and Qwen2 families."""
    return request.param


@pytest.fixture
def a3(backbone) -> A3Model:
    """A fresh tiny A3Model over each backbone family."""
    return make_a3(backbone)


@pytest.fixture
def a3_llama() -> A3Model:
    """A fresh tiny A3Model over LLaMA, for tests where the family does not matter."""
    return make_a3("llama")


@pytest.fixture
def make_model():
    """The factory itself, for tests that need another vocabulary, seed or config:
    make_model(kind, seed=0, **config_overrides) -> A3Model."""
    return make_a3


@pytest.fixture
def make_backbone():
    """make_base as a fixture: make_backbone(kind, seed=0, **config_overrides) -> causal LM."""
    return make_base


# ----------------------------------------------------------------------------------------------
# a prepared-corpus directory of synthetic text, for trainer tests (train.txt, eval.txt, tokenizer/)

WORDS = "the cat sat on a mat and a dog ran to the park while birds sang in tall green trees".split()


def synthetic_lines(n: int, seed: int = 0) -> list[str]:
    """n sentences of 8-20 words drawn from a 20-word vocabulary: easy to learn in a few steps."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) + "." for _ in range(n)]


def write_corpus(d, n_lines: int = 400, n_train: int = 360, vocab_size: int = 300):
    """Lay out what `python -m model.data prepare` writes, on synthetic text; returns (d, lines)."""
    from model.corpus.austen import train_tokenizer

    lines = synthetic_lines(n_lines)
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.txt").write_text("\n".join(lines[:n_train]) + "\n")
    (d / "eval.txt").write_text("\n".join(lines[n_train:]) + "\n")
    train_tokenizer(lines[:n_train], vocab_size=vocab_size).save_pretrained(str(d / "tokenizer"))
    return d, lines


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A prepared-corpus dir of repetitive synthetic text, shared by the trainer tests."""
    return write_corpus(tmp_path_factory.mktemp("corpus"))[0]
