"""What the app serves when nothing else is there, and the example stories.

    load_examples()            (title, template) of every assets/examples/*.txt
    fallback_tokenizer()       Austen's tokenizer when data/ is prepared, else a small BPE on the examples
    ensure_random_checkpoint() an untrained A3 checkpoint in the cache (written once), for a menu
                               with no checkpoint at all; clearly labelled as untrained there
Used by model_menu.py (which re-exports these names) and by scripts/make_tiny_checkpoint.py.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch

from model.backbones import smollm_base
from model.core import checkpoint

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
AUSTEN_TOKENIZER = ROOT / "data" / "austen" / "tokenizer"
RANDOM_NAME = "tiny-random"


def cache_dir() -> Path:
    """The app's cache: the one the SmolLM2 base is converted into (smollm_base.cache_root)."""
    return smollm_base.cache_root()


def load_examples() -> list[tuple[str, str]]:
    """(title, template) of every assets/examples/*.txt, in file order."""
    out = []
    for p in sorted(EXAMPLES.glob("*.txt")):
        title = re.sub(r"^\d+[-_]", "", p.stem).replace("-", " ").replace("_", " ").capitalize()
        out.append((title, p.read_text(encoding="utf-8").strip()))
    return out


def example_texts() -> list[str]:
    return [text for _, text in load_examples()]


def fallback_tokenizer():
    """The Austen tokenizer when data/ is prepared; else a small BPE trained on the examples."""
    from transformers import AutoTokenizer

    if (AUSTEN_TOKENIZER / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(AUSTEN_TOKENIZER))
    from model.corpus.austen import train_tokenizer
    return train_tokenizer(example_texts() or ["The cat sat on the mat."], vocab_size=600)


def write_random_checkpoint(out_dir: str | Path, tokenizer=None, hidden: int = 64, layers: int = 2,
                            max_positions: int = 512, seed: int = 0, intermediate: int | None = None) -> Path:
    """Save an untrained A3 checkpoint (a LLaMA backbone of `layers` x `hidden`) with a tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from model.core.a3 import A3Model

    tok = tokenizer or fallback_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate or hidden * 2 + hidden // 2,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=max_positions, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = A3Model(LlamaForCausalLM(cfg), init_seed=seed).eval()
    return model.save_pretrained(out_dir, tokenizer=tok)


def ensure_random_checkpoint() -> Path:
    """The cached fallback checkpoint, written on first use (atomically, by rename)."""
    path = cache_dir() / RANDOM_NAME
    if checkpoint.section(path, "a3") is None:
        if path.exists():  # a broken leftover
            shutil.rmtree(path, ignore_errors=True)
        tmp = path.with_name(f"{RANDOM_NAME}.tmp{os.getpid()}")
        write_random_checkpoint(tmp)
        try:
            tmp.replace(path)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return path
