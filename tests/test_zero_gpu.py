"""The app on a ZeroGPU Space, run under the `spaces` package's own ZeroGPU emulation on this CPU.

With SPACES_ZERO_GPU=true, `import spaces` (app.py's first import) patches torch for the process
and enters a TorchFunctionMode in the importing (main) thread: torch.cuda.is_available() is True,
and `.to("cuda")` in that thread gives tensors that report cuda:0 while their data stays on the
CPU (spaces.zero.torch.patching.cuda_aliases). launch() packs that data to a file on disk and
reports to the device API (/startup-report). Each call of a `spaces.GPU` function asks the API
for a GPU (/schedule, with the call's duration), forks a worker that registers (/allow), selects
the GPU and moves the packed tensors onto it, runs the function, sends the result back, and the
GPU is released (/release).

One child process per test (tests/zero_gpu_child.py; the patching must not reach other tests)
imports app.py the way a Space does, with a tiny random checkpoint written here as $A3_MODEL_DIR,
checks what the import loaded, launches the demo and makes the first Fill through /run with
gradio_client; the parent decodes the same request without `spaces` and compares the tokens. In
its "users" mode three users press Fill at once, each with their own X-IP-Token (what ZeroGPU
bills a call to): each run must be its own GPU call, billed to its own user.

Stubbed, because it does not exist here, and nothing else:
- the ZeroGPU device API ($SPACES_ZERO_DEVICE_API_URL): a local HTTP server in the child that
  answers /startup-report, /schedule (GPU 0, never idle), /allow and /release with success and
  records every call;
- the CUDA build of torch, where the package reads it before patching: this CPU build has
  torch.version.cuda None (spaces' static.py calls .startswith on it), no torch._C._cuda_init
  (spaces saves it to replace it), and a lambda as torch.cuda._is_in_bad_fork, which spaces' fork
  check cannot pickle; the child sets "12.8", a function that raises, and a function returning False;
- the GPU in the worker: spaces.zero.torch.init (`torch.Tensor([0]).cuda()`) does nothing, and
  spaces.zero.torch.move (the packed tensors from disk onto the GPU) reads the same pack file onto
  the CPU, so the decorated function runs in its forked worker, on the CPU, on the restored data.
Observed, not changed: model.backbones.lora.load_a3 (which thread loads what, where, in which
dtype), model_menu.cpu_threads (compute_rows asks it once a batch: which process, which device)
and compute.run_batch (in the worker: the rows of each GPU call).
The SmolLM2 base is not fetched (A3_FETCH_BASE=0, as in every test: it needs PyPI), so the
flagship adapter is in the menu but not loaded. The child's HOME, ZEROGPU_OFFLOAD_DIR and
ZEROGPU_MMAP_AUTOPRUNE_PATTERN point into tmp_path: the package writes ~/.zerogpu, and after
packing it deletes the mmapped files that match that pattern.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from test_app_e2e import STORY, TOTAL, tiny_menu

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("spaces") is None,
                                reason="needs the `spaces` package (requirements-dev.txt)")

CHILD = Path(__file__).with_name("zero_gpu_child.py")  # the Space's process, run as a script


def run_child(tmp_path: Path, ckpt: Path, dtype: str, mode: str = "first-run") -> dict:
    """Run CHILD (`mode`: "first-run" or "users") under SPACES_ZERO_GPU=true; its report (the child
    and its workers are ended here)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPACE_ID", "A3_DTYPE")}
    env.update(SPACES_ZERO_GPU="true", A3_MODEL_DIR=str(ckpt), A3_STUDIO_CACHE=str(tmp_path / "cache"),
               A3_DTYPE=dtype, HOME=str(tmp_path / "home"), ZEROGPU_OFFLOAD_DIR=str(tmp_path / "offload"),
               ZEROGPU_MMAP_AUTOPRUNE_PATTERN=str(tmp_path / "no-such-dir" / "*"), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", A3_FETCH_BASE="0", OMP_NUM_THREADS="1", A3_TORCH_THREADS="1", PYTHONPATH=str(ROOT))
    report = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, str(CHILD), str(report), mode, STORY], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    finally:  # a worker stuck in a fork would outlive its parent: end the child's whole session
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0 and report.is_file(), f"the child failed ({proc.returncode}):\n{out[-6000:]}"
    return json.loads(report.read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(checkpoint, the plain CPU run of STORY without `spaces`, the GPU seconds _duration asks for it)."""
    ckpt, mp = tiny_menu(tmp_path_factory)
    mp.delenv("SPACES_ZERO_GPU", raising=False)
    try:
        from app import compute, request

        run = request.prepare(request.RunRequest.check(STORY, "left_to_right", 1, 0, "", 0, 0, 1, "0"), "tiny")
        record = compute.execute(run)
        enc = run.enc
        duration = compute._duration("tiny", [(enc.input_ids, enc.blank_mask, enc.blank_spans)], [run.cfg], ["run"])
    finally:
        mp.undo()
    return ckpt, record, duration


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_zero_gpu_loads_at_import_and_the_first_run_decodes(reference, tmp_path, dtype):
    """Under the emulation: every menu model is on (emulated) CUDA at import, loaded in the main
    thread, in fp32 (bf16 with A3_DTYPE=bf16); compute_rows is spaces.GPU with the dynamic
    duration; the first Fill schedules that duration, runs in a forked worker and fills every blank
    (in fp32 with the same tokens as a plain CPU run)."""
    ckpt, ref, duration = reference
    torch_dtype = {"fp32": "torch.float32", "bf16": "torch.bfloat16"}[dtype]
    r = run_child(tmp_path, ckpt, dtype)

    assert r["zero_gpu"] and r["cuda_available"], "spaces' ZeroGPU mode patches torch.cuda.is_available to True"
    expected = {str(Path(m["path"]).resolve()) for m in r["menu"] if m["base_ok"]}
    assert str(ckpt.resolve()) in expected and set(r["loaded"]) == expected, \
        f"every menu model must be loaded at import: loaded {sorted(r['loaded'])}, menu {r['menu']}"
    assert len(r["loads_at_import"]) == len(expected), f"each model loaded once: {r['loads_at_import']}"
    for load in r["loads_at_import"]:
        assert load["main_thread"], f"ZeroGPU's CUDA emulation exists in the main thread only: {load}"
        assert load["device"] == "cuda" and load["dtype"] == torch_dtype, f"cuda, {torch_dtype}: {load}"
    for path, m in r["loaded"].items():
        assert m["device"] == "cuda:0" and m["emulated"], f"{path} is not on spaces' emulated CUDA: {m}"
        assert m["dtypes"] == [torch_dtype], f"{path} should be all {torch_dtype}: {m['dtypes']}"
    assert r["wrapper"] == {"decorated": True, "wraps": True, "duration": True}, \
        f"compute_rows must be spaces.GPU(duration=_duration)(_compute_rows): {r['wrapper']}"

    assert r["api_at_launch"] == ["/startup-report"] and r["packed"] == {"packs": 1, "offloaded": True}, \
        f"launch packs the emulated tensors to disk and reports: {r['api_at_launch']}, {r['packed']}"
    assert "run" in r, f"the first run gave no record; its status: {r.get('status')}"
    paths = [call[0] for call in r["api"]]
    assert paths == ["/startup-report", "/schedule", "/allow", "/release"], f"device API calls: {r['api']}"
    schedule, allow, release = (call[1] for call in r["api"][1:])
    assert int(schedule["durationSeconds"]) == round(duration), \
        f"/schedule should ask for _duration's {duration} s (spaces' default is 60): {schedule}"
    assert allow["pid"] != str(r["pid"]) and release["fail"] == "false", f"a forked worker ran it: {r['api']}"
    assert r["worker"] == [{"pid": int(allow["pid"]), "device": "cpu", "dtype": torch_dtype}], \
        f"compute_rows should run once, in the worker, on the restored weights: {r['worker']}"
    assert r["loads_after_import"] == [], f"nothing may load after import: {r['loads_after_import']}"

    assert r["status"].startswith("Done"), r["status"]
    blanks = [i for i, b in enumerate(r["run"]["blank_mask"]) if b]
    filled = sorted(p for positions, _ in r["run"]["steps"] for p in positions)
    assert len(blanks) == TOTAL and filled == blanks, f"every blank filled once: {filled} vs {blanks}"
    assert len(r["run"]["steps"]) == TOTAL, "left to right, one token a step"
    if dtype == "fp32":
        want = [[s["positions"], s["token_ids"]] for s in ref["steps"]]
        assert r["run"]["steps"] == want, "the worker's decode must equal the plain CPU decode (same weights)"


def test_a_loaded_model_is_returned_without_the_menus_lock(reference, monkeypatch):
    """A ZeroGPU worker is a fork of the server, and a lock that another thread held at that moment
    stays held in the fork forever: compute_rows's load of a preloaded model must not take it."""
    ckpt, _, _ = reference
    monkeypatch.setenv("A3_MODEL_DIR", str(ckpt))
    from app import model_menu

    loaded, got = model_menu.load("tiny"), []
    with model_menu._LOCK:  # held, as by a thread that was loading a model when the worker forked
        t = threading.Thread(target=lambda: got.append(model_menu.load("tiny")), daemon=True)
        t.start()
        t.join(timeout=10)
    assert got == [loaded], "load() of a loaded model waited for the menu's lock"


def test_each_users_run_is_its_own_gpu_call(reference, tmp_path):
    """Three users press Fill at once (one asks for two candidates): ZeroGPU bills a GPU call to the
    user whose request makes it, so each run must be a call of its own, made with its own user's
    token, whose worker decodes that user's rows and nobody else's (a user's own candidates share it)."""
    ckpt, _, _ = reference
    r = run_child(tmp_path, ckpt, "fp32", mode="users")
    users = r["users"]
    assert sorted(users) == ["ann", "ben", "cat"], f"every user should get an answer: {sorted(users)}"
    for name, u in users.items():
        assert u["status"].startswith("Done") and u["input_ids"], f"{name}'s run should finish: {u['status']}"
    schedules = [(params, answer) for path, params, answer in r["api"] if path == "/schedule"]
    assert len(schedules) == len(users), f"one GPU call per run, never one for several users: {r['api']}"
    owner = {u["token"]: name for name, u in users.items()}
    billed = sorted(owner.get(params.get("token"), "nobody") for params, _ in schedules)
    assert billed == sorted(users), f"each call must carry its own user's token (X-IP-Token): {billed}"
    pid_of = {params["allowToken"]: int(params["pid"]) for path, params, _ in r["api"] if path == "/allow"}
    rows_of = {}
    for call in r["gpu_calls"]:
        rows_of.setdefault(call["pid"], []).extend(call["rows"])
    for params, answer in schedules:
        name = owner[params["token"]]
        rows = rows_of.get(pid_of.get(answer["allowToken"]), [])
        want = 2 if name == "cat" else 1
        assert rows == [users[name]["input_ids"]] * want, \
            f"the call billed to {name} must decode {name}'s {want} row(s) only: {rows}"


def test_the_base_is_cached_in_a_spaces_persistent_storage(monkeypatch, tmp_path):
    """On a Space the converted SmolLM2 base goes to persistent storage (/data when writable, else
    $HF_HOME), which survives restarts; elsewhere, and without either, to ~/.cache/a3-studio."""
    from model.backbones import smollm_base

    for var in ("A3_STUDIO_CACHE", "SPACE_ID", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "data"
    monkeypatch.setattr(smollm_base, "PERSISTENT", data)
    home = Path("~/.cache/a3-studio").expanduser()
    assert smollm_base.cache_root() == home, "off a Space the cache stays in the home folder"
    monkeypatch.setenv("SPACE_ID", "alice/a3-studio")
    assert smollm_base.cache_root() == home, "a Space without persistent storage has only its own disk"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert smollm_base.cache_root() == tmp_path / "hf" / "a3-studio", "a Space's HF_HOME is the next best place"
    data.mkdir()
    assert smollm_base.cache_root() == data / "a3-studio", "a Space's writable /data is kept across restarts"
    monkeypatch.setenv("A3_STUDIO_CACHE", str(tmp_path / "mine"))
    assert smollm_base.cache_root() == tmp_path / "mine", "$A3_STUDIO_CACHE always wins"
