"""The run plumbing behind both tabs, with no Gradio in it: the model menu and examples, checking a
request (prepare_run), computing it in one call (execute), the animation's pace, and the run files
offered for download.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from . import models, record, render, runner, story

MAX_ANIMATION_S = 20.0  # a long run's animation is sped up to fit this
RUN_DIR = Path(tempfile.gettempdir()) / "a3-studio-runs"


def load_examples() -> list[tuple[str, str]]:
    """(title, template) of every assets/examples/*.txt, in file order."""
    out = []
    for p in sorted(models.EXAMPLES.glob("*.txt")):
        title = re.sub(r"^\d+[-_]", "", p.stem).replace("-", " ").replace("_", " ").capitalize()
        out.append((title, p.read_text(encoding="utf-8").strip()))
    return out


def menu_entry(key: str) -> models.ModelEntry:
    for e in models.available_models():
        if e.key == key:
            return e
    raise ValueError("that model is not in the menu any more; pick one from the list")


def tokenizer(key: str):
    model, tok = models.load(key)
    return tok, models.context_size(model)


def step_delay(speed: float, n_steps: int) -> float:
    try:
        d = max(0.0, min(float(speed), 2.0))
    except (TypeError, ValueError):
        d = 0.2
    return min(d, MAX_ANIMATION_S / max(n_steps, 1))


def save_run(rec: dict) -> str:
    """Write a run file for the download button; files older than an hour are removed."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    for old in RUN_DIR.iterdir():
        try:
            if time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    d = RUN_DIR / uuid.uuid4().hex[:12]
    d.mkdir()
    s = rec["settings"]
    path = d / f"a3-run-{s['strategy']}-seed{s['seed']}.json"
    path.write_text(record.to_json(rec), encoding="utf-8")
    return str(path)


def stats_table(rec: dict) -> list[list[str]]:
    return [[k, v] for k, v in render.stats_rows(rec)]


def preview(settings: dict, enc, entry: dict) -> dict:
    """A record with no steps yet: frame 0 of the animation."""
    return record.make_record(entry, settings, enc, [], None, 0.0)


def prepare_run(template, model_key, strategy, group_size, threshold, custom_order, temperature, top_k,
                top_p, seed, state):
    """Check everything a run needs: (settings, encoded, cfg, entry dict) or ValueError."""
    entry = menu_entry(model_key)
    settings = runner.settings_from_inputs(template, strategy, group_size, threshold, custom_order,
                                           temperature, top_k, top_p, seed)
    model, tok = models.load(entry.key)
    clean = story.clean_text(settings["template"])[0]
    originals = (state or {}).get("originals") if (state or {}).get("template") == clean else None
    _, enc, cfg = runner.build_request(settings, tok, models.context_size(model), originals)
    return settings, enc, cfg, {"label": entry.label, "path": entry.key, "trained": entry.trained}


def execute(settings, enc, cfg, entry) -> dict:
    t0 = time.perf_counter()
    steps, ar, _ = runner.compute(entry["path"], enc.input_ids, enc.blank_mask, cfg)
    rec = record.make_record(entry, settings, enc, steps, ar, time.perf_counter() - t0)
    _, tok = models.load(entry["path"])
    out = {p: t for s in steps for p, t in zip(s.positions, s.token_ids)}
    rec["fills"] = [tok.decode([out[p] for p in span]) for span in enc.blank_spans]
    return rec
