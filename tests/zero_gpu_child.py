"""The child process of tests/test_zero_gpu.py: app.py imported and served the way a ZeroGPU Space
does it, under the `spaces` package's own ZeroGPU emulation (that file's docstring says what is
stubbed and why). Not a test module: test_zero_gpu.py runs it as a script, one process per test,

    python tests/zero_gpu_child.py REPORT.json first-run STORY
    python tests/zero_gpu_child.py REPORT.json users STORY

and reads the JSON report it writes. "first-run" makes the first Fill through /run; "users" makes
one Fill per user at the same time, each user a client with its own X-IP-Token header (the header
ZeroGPU bills a GPU call to), one of them asking for two candidates. Every call to the device API
is recorded with what it answered, and every batch the worker decodes (its pid and rows), so the
test can tell whose rows ran in whose GPU call.
"""
import base64
import inspect
import json
import os
import runpy
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

report_path, mode, story = sys.argv[1], sys.argv[2], sys.argv[3]
report = {"pid": os.getpid(), "api": []}
USERS = {"ann": story, "ben": "It rained all day at [[5]], and nobody went out.",
         "cat": "The [[2]] was late, so the party [[6]] without it and came home before dark."}

# the ZeroGPU device API: every call succeeds and is recorded
class DeviceAPI(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        url = urlparse(self.path)
        answer = {}
        if url.path == "/schedule":  # never idle: each call forks a worker of its own
            answer = {"idle": False, "nvidiaIndex": 0, "nvidiaUUID": "GPU-emulated",
                      "allowToken": f"token-{len(report['api'])}"}
        report["api"].append([url.path, {k: v[0] for k, v in parse_qs(url.query).items()}, answer])
        body = json.dumps(answer).encode() if answer else b""
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

rows_log = report_path + ".rows"
run_batch = compute.run_batch
def observed_run_batch(model, requests, *args, **kwargs):  # in the worker: the rows of this GPU call
    with open(rows_log, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "rows": [[int(t) for t in ids] for ids, _ in requests]}) + "\n")
    return run_batch(model, requests, *args, **kwargs)
compute.run_batch = observed_run_batch
compute.WINDOW_S = 0.5  # an engine that batched users together would surely batch these


def ip_token(user):
    """An X-IP-Token as ZeroGPU's proxy sends it (a JWT; spaces reads its payload, never checks it)."""
    payload = base64.urlsafe_b64encode(json.dumps({"user": user}).encode()).decode().rstrip("=")
    return f"e30.{payload}.sig"


def fill(client, text, candidates=1):
    """One /run of `text`, left to right, no animation: its status line and the record it downloads."""
    last = client.submit(text, key, "left_to_right", 1, 0, "", 0, 0, 1, "0", 0, candidates, "orders",
                         api_name="/run").result()
    download = last[8]["value"] if isinstance(last[8], dict) else last[8]
    record = None
    if download:
        with open(download, encoding="utf-8") as f:
            record = json.load(f)
    return last[3], record

with socket.socket() as s:  # a free port: other tests may hold gradio's default 7860
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
demo = ns["demo"]
demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
report["packed"] = {"packs": len(tensor_packs), "offloaded": all(v is None for v in cuda_aliases.values())}
report["api_at_launch"] = [call[0] for call in report["api"]]

from gradio_client import Client

key = model_menu.available_models()[0].key
if mode == "first-run":
    client = Client(demo.local_url, verbose=False)
    try:
        report["status"], record = fill(client, story)
        if record:
            report["run"] = {"steps": [[s["positions"], s["token_ids"]] for s in record["steps"]],
                             "blank_mask": record["blank_mask"], "fills": record.get("fills")}
    finally:
        client.close()
else:  # users: everyone presses Fill at once, "cat" asking for two candidates
    clients = {u: Client(demo.local_url, verbose=False, headers={"x-ip-token": ip_token(u)}) for u in USERS}
    done, start = {}, threading.Barrier(len(USERS))

    def user(name):
        start.wait()
        done[name] = fill(clients[name], USERS[name], 2 if name == "cat" else 1)

    threads = [threading.Thread(target=user, args=(u,)) for u in USERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for c in clients.values():
        c.close()
    report["users"] = {u: {"token": ip_token(u), "status": done[u][0],
                           "input_ids": done[u][1]["input_ids"] if done[u][1] else None} for u in done}
    if os.path.exists(rows_log):
        with open(rows_log) as f:
            report["gpu_calls"] = [json.loads(line) for line in f]
demo.close()
report["loads_after_import"] = loads[len(report["loads_at_import"]):]
if os.path.exists(worker_log):
    with open(worker_log) as f:
        report["worker"] = [json.loads(line) for line in f]
with open(report_path, "w") as f:
    json.dump(report, f)
