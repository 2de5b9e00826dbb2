"""The app on a ZeroGPU Space, run under the `spaces` package's own ZeroGPU emulation on this CPU.

With SPACES_ZERO_GPU=true, `import spaces` (app.py's first import) patches torch for the process
and enters a TorchFunctionMode in the importing (main) thread: torch.cuda.is_available() is True,
and `.to("cuda")` in that thread gives tensors that report cuda:0 while their data stays on the
CPU (spaces.zero.torch.patching.cuda_aliases). launch() packs that data to a file on disk and
reports to the device API (/startup-report). Each call of a `spaces.GPU` function asks the API
for a GPU (/schedule, with the call's duration), forks a worker that registers (/allow), selects
the GPU and moves the packed tensors onto it, runs the function, sends the result back, and the
GPU is released (/release).

One child process per test (the patching must not reach other tests) imports app.py the way a
Space does, with a tiny random checkpoint written here as $A3_MODEL_DIR, checks what the import
loaded, launches the demo and makes the first Fill through /run with gradio_client. The parent
decodes the same request without `spaces` and compares the tokens.

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
dtype) and model_menu.cpu_threads (compute_rows asks it once a batch: which process, which device).
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

from test_app_e2e import STORY, TOTAL, write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("spaces") is None,
                                reason="needs the `spaces` package (requirements-dev.txt)")

CHILD = r"""
import inspect, json, os, runpy, socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

report_path, story = sys.argv[1], sys.argv[2]
report = {"pid": os.getpid(), "api": []}

# the ZeroGPU device API: every call succeeds and is recorded
class DeviceAPI(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        url = urlparse(self.path)
        report["api"].append([url.path, {k: v[0] for k, v in parse_qs(url.query).items()}])
        body = b""
        if url.path == "/schedule":
            body = json.dumps({"idle": False, "nvidiaIndex": 0, "nvidiaUUID": "GPU-emulated",
                               "allowToken": f"token-{len(report['api'])}"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

api = ThreadingHTTPServer(("127.0.0.1", 0), DeviceAPI)
threading.Thread(target=api.serve_forever, daemon=True).start()
os.environ["SPACES_ZERO_DEVICE_API_URL"] = f"http://127.0.0.1:{api.server_address[1]}"

# what the CPU build of torch lacks, read by spaces before it patches torch
import torch
torch.version.cuda = "12.8"
def no_cuda():
    raise RuntimeError("this torch build has no CUDA")
def not_in_bad_fork():
    return False
torch._C._cuda_init = no_cuda
torch.cuda._is_in_bad_fork = not_in_bad_fork

from model.backbones import lora

loads, load_a3 = [], lora.load_a3
def recorded_load_a3(path, dtype=torch.float32, device="cpu"):
    loads.append({"path": str(path), "main_thread": threading.current_thread() is threading.main_thread(),
                  "device": str(device), "dtype": str(dtype)})
    return load_a3(path, dtype=dtype, device=device)
lora.load_a3 = recorded_load_a3

ns = runpy.run_path("app.py", run_name="space_app")  # imports spaces, then the app; builds the demo

import spaces
import spaces.zero.torch as zero_torch
from spaces.zero.decorator import decorated_cache
from spaces.zero.torch.patching import cuda_aliases, tensor_packs
from app import compute, model_menu

report["zero_gpu"] = spaces.config.Config.zero_gpu
report["cuda_available"] = torch.cuda.is_available()
report["loads_at_import"] = list(loads)
report["menu"] = [{"path": str(e.path), "base_ok": e.base_ok, "label": e.label}
                  for e in model_menu.available_models()]
report["loaded"] = {path: {"device": str(m.device), "dtypes": sorted({str(p.dtype) for p in m.parameters()}),
                           "emulated": all(p in cuda_aliases for p in m.parameters())}
                    for path, (m, _) in model_menu._LOADED.items()}
report["wrapper"] = {"decorated": decorated_cache.get(compute._compute_rows) is compute.compute_rows,
                     "wraps": getattr(compute.compute_rows, "__wrapped__", None) is compute._compute_rows,
                     "duration": inspect.getclosurevars(compute.compute_rows).nonlocals.get("duration")
                                 is compute._duration}

# in the worker: no GPU to select; the packed tensors go back onto the CPU
def init(nvidia_uuid):
    pass
def move_to_cpu(callback=None):
    for fake, original in cuda_aliases.items():
        if original is not None:
            fake.data = original
    for pack in tensor_packs:  # pack_tensors' layout: each tensor page-aligned, batches then big ones
        data = torch.from_file(pack.path(), size=os.path.getsize(pack.path()), dtype=torch.uint8)
        offset = 0
        for meta, size, aligned in [t for batch in pack.batches for t in batch] + pack.big_tensors:
            storage = data[offset:offset + size].clone().untyped_storage()
            tensor = torch.empty(0, dtype=meta.dtype).set_(storage, 0, meta.shape, meta.stride())
            for fake in pack.fakes[meta]:
                fake.data = tensor
            offset += aligned
zero_torch.init, zero_torch.move = init, move_to_cpu

worker_log = report_path + ".worker"
cpu_threads = model_menu.cpu_threads
def observed_cpu_threads(model):  # compute_rows asks this once per batch: where it runs, on what
    with open(worker_log, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "device": str(model.device),
                            "dtype": str(next(model.parameters()).dtype)}) + "\n")
    return cpu_threads(model)
model_menu.cpu_threads = observed_cpu_threads

with socket.socket() as s:  # a free port: other tests may hold gradio's default 7860
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
demo = ns["demo"]
demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
report["packed"] = {"packs": len(tensor_packs), "offloaded": all(v is None for v in cuda_aliases.values())}
report["api_at_launch"] = [call[0] for call in report["api"]]

from gradio_client import Client
client = Client(demo.local_url, verbose=False)
try:
    key = model_menu.available_models()[0].key
    job = client.submit(story, key, "left_to_right", 1, 0, "", 0, 0, 1, "0", 0, 1, "orders", api_name="/run")
    frames = list(job)
    last = frames[-1]
    report["status"] = last[3]
    download = last[8]["value"] if isinstance(last[8], dict) else last[8]
    if download:
        with open(download, encoding="utf-8") as f:
            record = json.load(f)
        report["run"] = {"steps": [[s["positions"], s["token_ids"]] for s in record["steps"]],
                         "blank_mask": record["blank_mask"], "fills": record.get("fills")}
finally:
    client.close()
    demo.close()
report["loads_after_import"] = loads[len(report["loads_at_import"]):]
if os.path.exists(worker_log):
    with open(worker_log) as f:
        report["worker"] = [json.loads(line) for line in f]
with open(report_path, "w") as f:
    json.dump(report, f)
"""


def run_child(tmp_path: Path, ckpt: Path, dtype: str) -> dict:
    """Run CHILD under SPACES_ZERO_GPU=true; its report (the child and its worker are ended here)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPACE_ID", "A3_DTYPE")}
    env.update(SPACES_ZERO_GPU="true", A3_MODEL_DIR=str(ckpt), A3_STUDIO_CACHE=str(tmp_path / "cache"),
               A3_DTYPE=dtype, HOME=str(tmp_path / "home"), ZEROGPU_OFFLOAD_DIR=str(tmp_path / "offload"),
               ZEROGPU_MMAP_AUTOPRUNE_PATTERN=str(tmp_path / "no-such-dir" / "*"), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", A3_FETCH_BASE="0", OMP_NUM_THREADS="1", A3_TORCH_THREADS="1", PYTHONPATH=str(ROOT))
    report = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(report), STORY], cwd=ROOT, env=env,
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
    ckpt = write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
    mp = pytest.MonkeyPatch()
    mp.setenv("A3_MODEL_DIR", str(ckpt))
    mp.setenv("A3_STUDIO_CACHE", str(tmp_path_factory.mktemp("cache")))
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
