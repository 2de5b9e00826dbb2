"""The app's model menu: the shipped tiny model first, the SmolLM2 adapter offered beside it, and
its label saying what to run when its base has not been fetched (no network in the test)."""
from pathlib import Path

from app import model_menu as models
from model.backbones import smollm


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
    d = tmp_path / smollm.NAME
    d.mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json", smollm.SOURCE):
        (d / f).write_text("{}")  # is_converted only checks that the files are there
    monkeypatch.setenv("A3_STUDIO_CACHE", str(tmp_path))
    label = {Path(e.key).name: e.label for e in models.available_models()}["a3-smollm2-lora"]
    assert label == "a3-smollm2-lora", f"with the base converted the label should be the name alone: {label!r}"
