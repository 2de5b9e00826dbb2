"""Many users at once: N concurrent gradio_client clients run the same request against the app,
then the same runs go through one client, one after another, for comparison.

    python scripts/load_test.py                          # launch `python app.py` on the shipped model, 16 clients
    python scripts/load_test.py --clients 32 --runs 3
    python scripts/load_test.py --url http://127.0.0.1:7860/ --key a3-austen-tiny
    python scripts/load_test.py --model assets/a3-smollm2-mix --vs assets/a3-austen-tiny --no-serial   # both, one run

The request: a 100-token story (the start of assets/examples/04-a-change-of-plans.txt, tokenized
with the model's tokenizer) with one 10-token blank, left to right, greedy, animation off; with
--distinct each run's story starts with its own numbered line ("Part 17."), so that no run
finds its story already encoded (app: A3_CONTEXT_MB). A run
counts as an error when it raises, times out, or does not end with its "Done:" line. Reported:
errors, latency (submit to last frame) p50 / p95 / max, throughput (runs/s) for both phases.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "assets" / "examples" / "04-a-change-of-plans.txt"


def story(model_dir: Path, before: int = 45, blank: int = 10, after: int = 45) -> str:
    """A template of before + blank + after tokens (100 with the defaults) in the model's tokenizer."""
    from model.core.checkpoint import load_tokenizer

    tok = load_tokenizer(model_dir)
    ids = tok.encode(EXAMPLE.read_text(encoding="utf-8"), add_special_tokens=False)
    if len(ids) < before + blank + after:
        raise SystemExit(f"{EXAMPLE.name} has {len(ids)} tokens; the story needs {before + blank + after}")
    return tok.decode(ids[:before]) + f" [[{blank}]]" + tok.decode(ids[before + blank:before + blank + after])


def launch(model_dir: Path, port: int) -> subprocess.Popen:
    """`python app.py` with this model first in the menu; returns once the page answers."""
    env = dict(os.environ, A3_MODEL_DIR=str(model_dir), GRADIO_SERVER_PORT=str(port),
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=str(ROOT), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 300
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with code {proc.returncode} before it was ready")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("app.py was not ready after 300 s")


def one_run(client, args: dict, timeout: float) -> tuple[float, str | None]:
    """(seconds from submit to the last frame, error or None) of one /run."""
    t0 = time.perf_counter()
    job = client.submit(**args, api_name="/run")
    # block on the job's future: polling it from 16 threads would cost this 2-core machine a core
    if not futures.wait([job], timeout=timeout).done:
        job.cancel()
        return time.perf_counter() - t0, f"no result within {timeout:.0f} s"
    secs = time.perf_counter() - t0
    if job.exception() is not None:
        return secs, f"{type(job.exception()).__name__}: {job.exception()}"
    outs = job.outputs()
    status = outs[-1][3] if outs and isinstance(outs[-1][3], str) else ""
    return secs, None if status.startswith("Done:") else f"no 'Done:' line: {str(outs[-1][3] if outs else None)[:120]}"


def phase(url: str, args: dict, clients: int, runs: int, timeout: float, distinct: bool = False) -> dict:
    """`clients` clients, each on its own session and thread, each doing `runs` runs back to back."""
    from gradio_client import Client

    # as a browser does, leave each run's file on the server until asked for (no download per run)
    conns = [Client(url, verbose=False, download_files=False) for _ in range(clients)]
    results, lock = [], threading.Lock()
    start = threading.Barrier(clients)

    def user(c, i):
        start.wait()  # everyone starts together
        for k in range(runs):
            # --distinct: a numbered first line, so that no two runs share a visible text (nothing
            # the model keeps of one story serves another)
            r = one_run(c, {**args, "text": f"Part {i * runs + k + 1}. {args['text']}"} if distinct else args, timeout)
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(user, conns, range(clients)))
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    lat = sorted(s for s, _ in results)
    errors = [e for _, e in results if e]
    q = statistics.quantiles(lat, n=20, method="inclusive") if len(lat) > 1 else lat * 19
    return {"clients": clients, "runs": len(results), "errors": len(errors),
            "first_error": errors[0] if errors else "", "p50": statistics.median(lat), "p95": q[18],
            "max": lat[-1], "wall": wall, "runs_per_s": len(results) / wall}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running app (default: launch `python app.py` on --model)")
    p.add_argument("--model", default=str(ROOT / "assets" / "a3-austen-tiny"),
                   help="checkpoint to serve (and whose tokenizer writes the story)")
    p.add_argument("--key", help="menu key to request (default: the app's default model)")
    p.add_argument("--vs", help="a second checkpoint of the same app's menu (e.g. assets/a3-austen-tiny): the same "
                   "concurrent load on it, in the same run, and the ratio of the p95 latencies")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--runs", type=int, default=5, help="runs per client; the serial phase does clients x runs")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before a run counts as an error")
    p.add_argument("--port", type=int, default=7893, help="port for the launched app")
    p.add_argument("--no-serial", action="store_true", help="skip the one-client phase")
    p.add_argument("--distinct", action="store_true",
                   help="every run a different story (a numbered first line): the encoded-story store "
                        "(core/context_store.py) never serves one run's story to another")
    a = p.parse_args(argv)

    model = Path(a.model).resolve()
    proc = None if a.url else launch(model, a.port)
    url = a.url or f"http://127.0.0.1:{a.port}/"
    try:
        from gradio_client import Client

        c = Client(url, verbose=False)
        menu = next(x for x in c.config["components"] if x.get("props", {}).get("elem_id") == "model")
        targets = [(a.key or menu["props"]["value"], model)]  # the app's default: --model, first in its menu
        if a.vs:
            targets.append((Path(a.vs).resolve().name, Path(a.vs).resolve()))
        rows = []
        for key, mdir in targets:
            # greedy, one candidate, animation off
            args = dict(text=story(mdir), model=key, order="left_to_right", speed=0, candidates=1)
            secs, err = one_run(c, args, a.timeout)  # warm-up: the first run pays for lazy imports and loading
            if err:
                raise SystemExit(f"the warm-up run on {key} failed: {err}")
            print(f"app {url} · model {key} · request: 100-token story{' (each run its own)' if a.distinct else ''}, "
                  f"one 10-token blank, left to right, greedy, animation off · warm-up {secs:.2f} s · CPUs: {os.cpu_count()}, "
                  f"load average {os.getloadavg()[0]:.1f}")
            rows.append({"model": key, **phase(url, args, a.clients, a.runs, a.timeout, a.distinct)})
            if not a.no_serial:
                rows.append({"model": key, **phase(url, args, 1, a.clients * a.runs, a.timeout, a.distinct)})
        c.close()
        print("\n| model | clients | runs | errors | p50 (s) | p95 (s) | max (s) | wall (s) | runs/s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['model']} | {r['clients']} | {r['runs']} | {r['errors']} | {r['p50']:.2f} | {r['p95']:.2f} | "
                  f"{r['max']:.2f} | {r['wall']:.1f} | {r['runs_per_s']:.2f} |")
        if a.vs:
            conc = [r for r in rows if r["clients"] == a.clients]
            print(f"\np95 with {a.clients} clients: {conc[0]['model']} {conc[0]['p95']:.2f} s = "
                  f"{conc[0]['p95'] / conc[1]['p95']:.2f}x {conc[1]['model']} ({conc[1]['p95']:.2f} s)")
        for r in rows:
            if r["errors"]:
                print(f"first error on {r['model']} with {r['clients']} client(s): {r['first_error']}")
        return 1 if any(r["errors"] for r in rows) else 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
