"""The model menu: which A3 checkpoints the app offers, loading them once for everyone (read-only,
shared), the note shown under the menu, and the example stories.

The menu, in order:
1. $A3_MODEL_DIR, when set (tests point it at a tiny checkpoint they write);
2. the shipped model, assets/a3-austen-tiny;
3. any other directory under assets/ whose config.json has an `a3` section (an adapter over the
   SmolLM2 base says in its label when that base still has to be fetched);
4. only when none of the above exists: an untrained random checkpoint generated at first start
   into ~/.cache/a3-studio/tiny-random (or $A3_STUDIO_CACHE), clearly labelled as such.
The first entry is the default. A checkpoint whose `a3.training` record is empty is labelled
"untrained". Models are cached at module level and never modified after loading; per-user
data lives in gr.State (see ui.py). Checkpoint files are read through model/core/checkpoint.py.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from model.core import checkpoint

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
SHIPPED = ASSETS / "a3-austen-tiny"
EXAMPLES = ASSETS / "examples"
AUSTEN_TOKENIZER = ROOT / "data" / "austen" / "tokenizer"
RANDOM_NAME = "tiny-random"


def cache_dir() -> Path:
    return Path(os.environ.get("A3_STUDIO_CACHE", "~/.cache/a3-studio")).expanduser()


@dataclass(frozen=True)
class ModelEntry:
    key: str  # what the dropdown returns: the checkpoint path
    label: str  # what the user reads
    path: Path
    trained: bool


def a3_section(path: Path) -> dict | None:
    """The `a3` section of a checkpoint's config.json, or None if it is not an A3 checkpoint."""
    return checkpoint.section(path, "a3")


def menu_entry(key: str) -> ModelEntry:
    """The menu entry of a dropdown value, or a ValueError asking to pick again."""
    for e in available_models():
        if e.key == key:
            return e
    raise ValueError("that model is not in the menu any more; pick one from the list")


def base_available(a3: dict) -> bool:
    """False only for an adapter over the SmolLM2 base when that base is not converted yet."""
    from model.backbones import smollm

    return a3.get("base_model") != smollm.REF or smollm.is_converted(smollm.base_dir())


def _entry(path: Path, note: str = "") -> ModelEntry | None:
    a3 = a3_section(path)
    if a3 is None:
        return None
    trained = bool(a3.get("training"))
    label = path.name + (note and f" ({note})")
    if not trained:
        label += " — untrained random weights"
    if not base_available(a3):
        label += " — needs its base: run `python -m model.smollm fetch` once"
    return ModelEntry(str(path), label, path, trained)


def available_models() -> list[ModelEntry]:
    """The model menu (see the module docstring); the first entry is the default."""
    found: list[ModelEntry] = []
    env = os.environ.get("A3_MODEL_DIR")
    candidates = [(Path(env).expanduser(), "A3_MODEL_DIR")] if env else []
    candidates.append((SHIPPED, "shipped"))
    if ASSETS.is_dir():
        candidates += [(d, "") for d in sorted(ASSETS.iterdir()) if d.is_dir() and d != SHIPPED]
    seen = set()
    for path, note in candidates:
        e = _entry(path, note)
        if e and e.path.resolve() not in seen:
            seen.add(e.path.resolve())
            found.append(e)
    if not found:
        path = ensure_random_checkpoint()
        found.append(ModelEntry(str(path), "tiny random model (untrained; the shipped one is missing)",
                                path, False))
    return found


# ----------------------------------------------------------------------------------------------
# the fallback: a tiny random checkpoint

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
    if a3_section(path) is None:
        if path.exists():  # a broken leftover
            shutil.rmtree(path, ignore_errors=True)
        tmp = path.with_name(f"{RANDOM_NAME}.tmp{os.getpid()}")
        write_random_checkpoint(tmp)
        try:
            tmp.replace(path)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return path


# ----------------------------------------------------------------------------------------------
# loading, once per process

_LOADED: dict[str, tuple] = {}
_LOCK = threading.Lock()


def load(key: str):
    """(model, tokenizer) for a menu key (a checkpoint path), loaded once and shared."""
    with _LOCK:
        if key not in _LOADED:
            from model.backbones.lora import load_a3

            path = Path(key)
            if a3_section(path) is None:
                raise ValueError(f"{path} is not an A3 checkpoint (no config.json with an `a3` section)")
            device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = torch.bfloat16 if device == "cuda" else torch.float32  # no bf16 on these CPUs
            model, tokenizer = load_a3(path, dtype=dtype, device=device)  # full checkpoint or LoRA adapter
            model.requires_grad_(False)
            _LOADED[key] = (model, tokenizer)
        return _LOADED[key]


SMALL_MODEL = 50e6  # parameters; below this one CPU thread decodes fastest (measured: 2 threads ~2-30x slower)


def cpu_threads(model) -> int | None:
    """Intra-op threads for decoding with this model on the CPU: $A3_TORCH_THREADS if set, 1 for a
    small model (its ops take microseconds, thread hand-offs dominate), else torch's default."""
    if os.environ.get("A3_TORCH_THREADS", "").isdigit():
        return max(1, int(os.environ["A3_TORCH_THREADS"]))
    if model.device.type != "cpu":
        return None
    return 1 if sum(p.numel() for p in model.parameters()) < SMALL_MODEL else None


def context_size(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


def tokenizer(key: str):
    """(tokenizer, context size) of a menu model."""
    model, tok = load(key)
    return tok, context_size(model)


def model_note(key: str) -> str:
    """The Markdown note under the menu: size, context, device, and a warning for random weights."""
    from .render import md_escape

    try:
        e = menu_entry(key)
        model, _ = load(key)
    except Exception as err:  # noqa: BLE001 -- a broken checkpoint must not take the page down
        return f"⚠️ cannot load this model: {md_escape(str(err))}"
    n = sum(p.numel() for p in model.parameters()) / 1e6
    text = (f"**Model:** {md_escape(e.label)} · {n:.1f}M parameters · context "
            f"{context_size(model)} tokens · {model.device.type}")
    if not e.trained:
        text += ("  \n<span class='warn'>⚠️ **Untrained random model**: the words it writes are "
                 "gibberish; the orders, steps, probabilities and speed are real.</span>")
    return text
