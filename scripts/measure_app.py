"""Timing of the app: start to ready, first frame and whole run for a 10-token blank in a
100-token story, through gradio_client against `python app.py` in a subprocess.

    python scripts/measure_app.py            # the default (shipped) model; A3_MODEL_DIR=... for another
"""
import os, subprocess, sys, time, urllib.request
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
port = "7871"
env = dict(os.environ, GRADIO_SERVER_PORT=port, GRADIO_ANALYTICS_ENABLED="False")
t0 = time.perf_counter()
proc = subprocess.Popen([sys.executable, "app.py"], cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1); break
        except Exception:
            time.sleep(0.05)
    ready = time.perf_counter() - t0
    from gradio_client import Client
    from model.core.checkpoint import load_tokenizer
    from app.model_menu import available_models
    from model.core.infill import parse_template, encode_segments
    key = available_models()[0].key
    tok = load_tokenizer(available_models()[0].path)
    ids = tok.encode(open(ROOT / "assets/examples/04-a-change-of-plans.txt").read(), add_special_tokens=False)
    tpl = tok.decode(ids[:45]) + " [[10]]" + tok.decode(ids[46:91])
    enc = encode_segments(tok, parse_template(tpl), 0)
    c = Client(f"http://127.0.0.1:{port}", verbose=False)
    print(f"model {key}\nstart to ready: {ready:.2f} s\nstory: {len(enc.input_ids) - 1} tokens + BOS, {sum(enc.blank_mask)} blank")
    for strategy, speed in (("left_to_right", 0.15), ("left_to_right", 0.0), ("confidence", 0.15), ("confidence", 0.0)):
        for rep in range(2):
            t = time.perf_counter(); first = None; n = 0
            for f in c.submit(tpl, key, strategy, 1, 0, "", 0, 0, 1, "0", speed, 1, "orders", api_name="/run"):
                n += 1
                if first is None: first = time.perf_counter() - t
            total = time.perf_counter() - t
            print(f"{strategy:14s} speed {speed:.1f} s/step: first frame {first:.3f} s, whole run {total:.3f} s ({n} frames)")
    c.close()
finally:
    proc.terminate(); proc.wait()
