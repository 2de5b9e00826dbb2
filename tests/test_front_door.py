"""The library's front door (model/__init__.py): `import model` stays light, every exported name is
its home module's own object, and the README's library example (docs/library-snippet.py) runs as
written on the shipped checkpoint and, pointed at them, on a full and an adapter checkpoint built
here; the log-probability it prints is the exact one scoring computes."""
from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import time
from importlib import import_module
from pathlib import Path

import pytest
import torch

import model as front
from conftest import make_a3, make_base, synthetic_lines

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = ROOT / "docs" / "library-snippet.py"
SHIPPED = "assets/a3-austen-tiny"  # the path the snippet loads, as written
PRINTED = re.compile(r"'(.*)' log p = (-\d+\.\d\d) nats")


def test_import_model_is_light():
    """`import model` (and so every `python -m model.<command>`) imports no torch until a name is used."""
    code = "import sys, model; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"import model should not import torch: {out.stdout!r} {out.stderr[-300:]}"


def test_every_front_door_name_is_its_home_modules_own():
    for name in front.__all__:
        home = import_module(front._HOMES[name])
        assert getattr(front, name) is getattr(home, name), f"model.{name} should be {home.__name__}.{name}"
    assert set(front.__all__) <= set(dir(front)), "dir(model) should list the front door"
    with pytest.raises(AttributeError, match="has no attribute 'fill_everything'"):
        front.fill_everything  # noqa: B018 (the lookup is the test)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, str]:
    """Two tiny random checkpoints with their tokenizer: a full A3 model and a LoRA adapter over a
    base saved beside it (what load_a3 reads either way)."""
    from model.backbones.lora import add_lora, save_adapter
    from model.core.a3 import A3Model
    from model.corpus.austen import train_tokenizer
    d = tmp_path_factory.mktemp("front")
    tok = train_tokenizer(synthetic_lines(200), vocab_size=300)
    make_a3(vocab_size=len(tok)).save_pretrained(d / "full", tokenizer=tok)
    make_base(seed=1, vocab_size=len(tok)).save_pretrained(d / "base")
    adapter = add_lora(A3Model.from_base(d / "base"), r=4, alpha=8)
    with torch.no_grad():
        adapter.w.add_(0.1)  # a trained w differs from the init: the adapter's own w must be loaded
    save_adapter(adapter, d / "adapter", str(d / "base"), tok)
    return {"full": str(d / "full"), "adapter": str(d / "adapter")}


def run_snippet(path: str) -> tuple[str, dict]:
    """Run docs/library-snippet.py as written, loading `path` instead of the shipped checkpoint:
    (what it printed, its variables)."""
    code = SNIPPET.read_text(encoding="utf-8")
    assert code.count(f'"{SHIPPED}"') == 1, f"the snippet should load {SHIPPED} once"
    assert code.count("from model import") == 1 and "import model." not in code and "from model." not in code, \
        "the snippet imports from the front door only"
    out, env = io.StringIO(), {"__name__": "__main__"}
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace(f'"{SHIPPED}"', repr(path)), str(SNIPPET), "exec"), env)
    return out.getvalue(), env


@pytest.mark.parametrize("which", ["shipped", "full", "adapter"])
def test_the_library_snippet_runs_as_written(which, built):
    from model.core.scoring import score_blanks
    t0 = time.perf_counter()
    printed, env = run_snippet(SHIPPED if which == "shipped" else built[which])
    seconds = time.perf_counter() - t0
    m = PRINTED.fullmatch(printed.strip())
    assert m, f"the snippet prints the fill and its log-probability: {printed!r}"
    trace, enc = env["trace"], env["enc"]
    assert m.group(1) == trace.fills(env["tok"])[0] and len(trace.fill_ids()[0]) == 6, \
        f"the printed fill is the blank's 6 tokens: {printed!r}"
    exact = score_blanks(env["model"], trace.output_ids, enc.blank_mask).sum().item()
    assert trace.exact and float(m.group(2)) == pytest.approx(exact, abs=0.006), \
        f"the printed log p should be the exact log p(fill | text), {exact:.4f}: {printed!r}"
    if which == "adapter":
        from safetensors.torch import load_file

        from model.core.a3 import W_KEY
        from model.core.checkpoint import ADAPTER
        saved = load_file(str(Path(built["adapter"]) / ADAPTER))[W_KEY]
        assert env["model"].lora is None and torch.equal(env["model"].w, saved), \
            "load_a3 merges an adapter into its base and loads the adapter's own w"
    assert seconds < 20, f"the snippet should run in a few seconds, took {seconds:.1f} s"
