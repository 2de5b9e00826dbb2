"""The hostile-input sweep: well over a hundred kinds of bad, odd or hostile input sent through
the app's public API, each of which must end in a clear message (the status or info line starts
with "⚠️" and names what to change) or a sensible result, within a time limit: never a generic
"Error", never a hang, never a server path in the reply.

One app is launched for the module (a tiny random checkpoint written here, as in
test_app_e2e.py). Values gradio_client sends go through it; values it refuses or cannot encode
(NaN, infinities, lone surrogates) go as raw HTTP to Gradio 6's /gradio_api/call/<api> route.
Run files are built from a real run of this app, then broken one field at a time.

A few inputs never reach the app: a request with too few values, or an upload that is not a
file Gradio received (a bare string, or a path outside its cache). Gradio refuses those itself,
on purpose without detail (its path check is what keeps files outside its cache unreadable);
test_gradio_refuses_what_is_not_a_request checks that they fail fast, leak nothing and leave the
app serving.
"""
from __future__ import annotations

import copy
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import torch
from gradio_client import Client, handle_file
from transformers import LlamaConfig, LlamaForCausalLM

from model.core.a3 import A3Model
from test_app_e2e import STORY, free_port

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = 1024  # room for a run file of more steps than an animation shows
TIMEOUT = 30.0  # seconds per request: anything slower counts as a hang
KEY = "sweep-tiny"  # the checkpoint's folder name, hence its menu key
ONE = "A [[1]] b."  # a one-token run: cheap, for the pacing cases
STATUS_AT = {"/compare": 6, "/scrub": 1}  # where each endpoint says what went wrong (default: 3)


# ----------------------------------------------------------------------------------------------
# the app, and two ways to call it

@dataclass
class Sweep:
    client: Client
    url: str
    ckpt: Path
    record: dict  # a finished left-to-right run of STORY, as this app writes it
    files: Path  # where the run files of the cases are written


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from app.fallback import example_texts
    from model.corpus.austen import train_tokenizer

    tok = train_tokenizer(example_texts(), vocab_size=500)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
                      initializer_range=0.3, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    torch.manual_seed(0)
    ckpt = tmp_path_factory.mktemp("ckpt") / KEY
    A3Model(LlamaForCausalLM(cfg)).eval().save_pretrained(ckpt, tokenizer=tok)
    mp = pytest.MonkeyPatch()
    mp.setenv("A3_MODEL_DIR", str(ckpt))
    mp.setenv("A3_STUDIO_CACHE", str(tmp_path_factory.mktemp("cache")))  # no SmolLM2 base in it
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    from app.ui import build_demo

    demo = build_demo()
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    client = Client(demo.local_url, verbose=False)
    try:
        frames, err = via_client(client, "/run", [STORY, KEY, "left_to_right", 1, 0, "", 0, 0, 1, "0", 0, 1, "orders"])
        assert err is None and frames, f"the sweep needs one good run first: {err}"
        dl = frames[-1][8]
        record = json.loads(Path(dl["value"] if isinstance(dl, dict) else dl).read_text(encoding="utf-8"))
        yield Sweep(client, demo.local_url, ckpt, record, tmp_path_factory.mktemp("files"))
    finally:
        client.close()
        demo.close()
        mp.undo()


def via_client(client: Client, api: str, args: list, timeout: float = TIMEOUT):
    """(every output of the call, error text or None) through gradio_client, with a deadline."""
    job = client.submit(*args, api_name=api)
    end = time.monotonic() + timeout
    while not job.done():
        if time.monotonic() > end:
            job.cancel()
            return [], f"no reply within {timeout:.0f} s"
        time.sleep(0.02)
    exc = job.exception()
    outs = [list(o) if isinstance(o, (list, tuple)) else [o] for o in job.outputs()]
    return outs, (f"{type(exc).__name__}: {exc}" if exc else None)


def via_http(url: str, api: str, args: list, timeout: float = TIMEOUT):
    """The same through Gradio 6's plain HTTP route, with JSON the client would refuse (NaN,
    infinities; lone surrogates as \\ud800 escapes): (outputs, error text or None)."""
    body = json.dumps({"data": args})  # ensure_ascii and allow_nan: Python's defaults
    r = httpx.post(f"{url}gradio_api/call/{api.strip('/')}", content=body,
                   headers={"content-type": "application/json"}, timeout=timeout)
    if r.status_code != 200:
        return [], f"HTTP {r.status_code}: {r.text[:200]}"
    frames, event, end = [], None, time.monotonic() + timeout
    with httpx.stream("GET", f"{url}gradio_api/call/{api.strip('/')}/{r.json()['event_id']}", timeout=timeout) as s:
        for line in s.iter_lines():
            if time.monotonic() > end:
                return frames, f"no reply within {timeout:.0f} s"
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("generating", "complete"):
                frames.append(json.loads(line[5:]))
                if event == "complete":
                    return frames, None
            elif line.startswith("data:") and event == "error":
                return frames, f"error event: {line[5:].strip()[:300]}"
    return frames, "the stream ended without a result"


# ----------------------------------------------------------------------------------------------
# what a reply must be

def plain(x) -> str:
    """Markdown as a reader sees it: the app's escapes (backslashes, HTML entities) removed."""
    return html.unescape(x.replace("\\", "")) if isinstance(x, str) else ""


@dataclass
class Says:
    """A refusal: the status line starts with ⚠️ and holds `fragment`."""
    fragment: str


@dataclass
class Gives:
    """A sensible result: check(frames) is true; `what` says what was expected."""
    check: Callable[[list], bool]
    what: str


def done(tokens: int) -> Gives:
    return Gives(lambda fr: plain(fr[-1][3]).startswith(f"Done: {tokens} tokens"), f"a finished run of {tokens} tokens")


def info(pred: Callable[[str, Any], bool], what: str) -> Gives:
    """A story-area reply whose info line (and template) pass pred."""
    return Gives(lambda fr: isinstance(fr[-1][3], str) and not fr[-1][3].startswith("⚠️") and pred(plain(fr[-1][3]), fr[-1][0]), what)


unchanged = Gives(lambda fr: all(not isinstance(x, str) for x in fr[-1]), "no change (every output skipped)")


@dataclass
class Case:
    id: str
    api: str
    args: Any  # a list, or fn(Sweep) -> list
    expect: Says | Gives
    raw: bool = False  # send as raw HTTP (the client refuses or cannot encode the value)


def run_args(**kw) -> list:
    """The /run arguments (template, model, order, group size, threshold, custom order, temperature,
    top-k, top-p, seed, speed, candidates, pool) with some replaced."""
    a = dict(template=STORY, key=KEY, strategy="left_to_right", group_size=1, threshold=0, custom="",
             temperature=0, top_k=0, top_p=1, seed="0", speed=0, candidates=1, pool="orders")
    a.update(kw)
    return list(a.values())


def cmp_args(**kw) -> list:
    """The /compare arguments: story, model, sampling, speed, then order A and order B."""
    a = dict(template=STORY, key=KEY, temperature=0, top_k=0, top_p=1, seed="0", speed=0,
             a_strategy="left_to_right", a_size=1, a_threshold=0, a_custom="",
             b_strategy="confidence", b_size=2, b_threshold=0, b_custom="")
    a.update(kw)
    return list(a.values())


def run_file(name: str, edit: Callable[[dict], Any] | None = None, text: str | bytes | None = None,
             speed: Any = 0) -> Callable[[Sweep], list]:
    """/load_run arguments for a file: the good record changed by edit(rec), or the given text."""
    def make(sw: Sweep) -> list:
        path = sw.files / f"{name}.json"
        if text is not None:
            path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        else:
            rec = copy.deepcopy(sw.record)
            edit(rec)
            path.write_text(json.dumps(rec), encoding="utf-8")  # ensure_ascii: a surrogate stays an escape
        return [handle_file(str(path)), speed]
    return make


def step0(**kw) -> Callable[[dict], None]:
    return lambda rec: rec["steps"][0].update(kw)


def positions(n: int) -> Callable[[dict], None]:
    """A record of one blank of n positions and no steps (the issue's 300,000)."""
    def edit(rec):
        rec.update(input_ids=[0] + [5] * n, blank_mask=[False] + [True] * n, steps=[])
        rec["layout"] = [{"kind": "text", "text": "A", "positions": [], "original": None},
                         {"kind": "blank", "text": " ", "positions": list(range(1, n + 1)), "original": None}]
    return edit


def empty_steps(n: int) -> Callable[[dict], None]:
    """The issue's run file: n steps that fill nothing."""
    def edit(rec):
        s = rec["steps"][0]
        rec["steps"] = [dict(s, index=i, positions=[], token_ids=[], tokens=[], probs=[], alternatives=[], entropy=[])
                        for i in range(n)]
    return edit


def long_run(n: int) -> Callable[[dict], None]:
    """A valid run of n one-token steps (more than an animation shows)."""
    def edit(rec):
        rec.update(input_ids=[0, 7] + [5] * n, blank_mask=[False, False] + [True] * n)
        rec["layout"] = [{"kind": "text", "text": "A", "positions": [1], "original": None},
                         {"kind": "blank", "text": " ", "positions": list(range(2, n + 2)), "original": None}]
        rec["steps"] = [{"index": i, "positions": [i + 2], "token_ids": [9], "tokens": [" x"], "probs": [0.5],
                         "alternatives": [[[" x", 0.5], [" y", 0.25]]], "entropy": [1.0], "forward_passes": i + 1,
                         "elapsed": 0.001 * (i + 1), "pending": n - i - 1} for i in range(n)]
        rec.pop("fills", None)
    return edit


def nested(depth: int) -> str:
    return json.dumps({"format": "a3-studio-run", "version": 1, "x": json.loads("[" * depth + "]" * depth)})


def replays(steps: int, max_frames: int | None = None) -> Gives:
    def check(fr):
        ok = plain(fr[-1][3]).startswith("Done:") and plain(fr[-1][1]).startswith(f"Step {steps} of {steps}")
        return ok and (max_frames is None or len(fr) <= max_frames)
    return Gives(check, f"a replay that ends on step {steps}" + (f" in at most {max_frames} frames" if max_frames else ""))


def setting(**kw) -> Callable[[dict], None]:
    return lambda rec: rec["settings"].update(kw)


NAN, INF = float("nan"), float("inf")

CASES = [
    # -- /run: the story text --
    Case("text-empty", "/run", run_args(template=""), Says("empty")),
    Case("text-whitespace", "/run", run_args(template="   \n\t "), Says("empty")),
    Case("text-none", "/run", run_args(template=None), Says("empty")),
    Case("text-number", "/run", run_args(template=12345), Says("no blank")),
    Case("text-no-blank", "/run", run_args(template="No blanks in this story."), Says("no blank")),
    Case("text-all-blank", "/run", run_args(template="[[5]]"), Says("everything is blank")),
    Case("text-huge", "/run", run_args(template="x" * 100_001 + " [[2]]"), Says("characters long; keep it under 100000")),
    Case("text-too-long-for-context", "/run", run_args(template="word " * 3000 + "[[2]]"), Says("context")),
    Case("text-newlines", "/run", run_args(template="\n" * 50_000 + "x [[2]]"), Says("context")),
    Case("text-xss", "/run", run_args(template="<script>alert(1)</script> <img src=x onerror=alert(1)> [[2]] end."),
         Gives(lambda fr: "<script>alert(1)</script>" in "".join(s["token"] for s in fr[-1][0]) and plain(fr[-1][3]).startswith("Done: 2"),
               "markup kept as literal text, and the run done")),
    Case("text-markdown", "/run", run_args(template="**bold** [link](http://x) `code` # h [[2]] |a|b|"), done(2)),
    Case("text-control-chars", "/run", run_args(template="\x00\x07\x1b[31m red [[2]] end\x7f"),
         Gives(lambda fr: not any(c in "".join(s["token"] for s in fr[-1][0]) for c in "\x00\x07\x1b\x7f"), "control characters removed")),
    Case("text-bidi-override", "/run", run_args(template="\u202eevil\u202c [[2]] end\u200b\ufeff"),
         Gives(lambda fr: "\u202e" not in "".join(s["token"] for s in fr[-1][0]) and plain(fr[-1][3]).startswith("Done: 2"),
               "bidi overrides removed, the run done")),
    Case("text-emoji-cjk", "/run", run_args(template="🙂 猫が [[2]] ☃ end."), done(2)),
    Case("text-lone-surrogate", "/run", run_args(template="Lone \ud800 here [[2]] end."), done(2), raw=True),
    Case("text-reversed-surrogates", "/run", run_args(template="\udfff\ud800 x [[2]]"), done(2), raw=True),
    Case("blank-zero", "/run", run_args(template="A [[0]] b"), Says("1 to 1024")),
    Case("blank-negative", "/run", run_args(template="A [[-1]] b"), Says("number of tokens")),
    Case("blank-huge", "/run", run_args(template="A [[1000000]] b"), Says("1 to 1024")),
    Case("blank-over-context", "/run", run_args(template="A [[1024]] b"), Says("context")),
    Case("blank-word", "/run", run_args(template="A [[two]] b"), Says("number of tokens")),
    Case("blank-empty", "/run", run_args(template="A [[ ]] b"), Says("number of tokens")),
    Case("blank-decimal", "/run", run_args(template="A [[2.5]] b"), Says("number of tokens")),
    Case("blank-exponent", "/run", run_args(template="A [[1e3]] b"), Says("number of tokens")),
    Case("blank-nested", "/run", run_args(template="A [[[[2]]]] b"), Says("number of tokens")),
    Case("blank-unclosed", "/run", run_args(template="A [[2] b"), Says("no blank")),
    Case("blank-markup-inside", "/run", run_args(template="A [[<b>2</b>]] b"), Says("number of tokens")),
    Case("blanks-adjacent", "/run", run_args(template="A [[2]][[3]] b."), done(5)),
    Case("blanks-many", "/run", run_args(template="x [[1]]" * 1100), Says("context")),
    # -- /run: order, sizes, threshold, custom order --
    Case("order-unknown", "/run", run_args(strategy="zigzag"), Says("unknown strategy")),
    Case("order-empty", "/run", run_args(strategy=""), Says("unknown strategy")),
    Case("order-none", "/run", run_args(strategy=None), Says("unknown strategy")),
    Case("order-number", "/run", run_args(strategy=5), Says("unknown strategy")),
    Case("order-list", "/run", run_args(strategy=["left_to_right"]), Says("unknown strategy")),
    Case("order-upper-case", "/run", run_args(strategy="LEFT_TO_RIGHT"), Says("unknown strategy")),
    Case("group-size-0", "/run", run_args(group_size=0), Says("group size / k must be between 1 and 64")),
    Case("group-size-negative", "/run", run_args(group_size=-1), Says("group size / k must be between 1 and 64")),
    Case("group-size-65", "/run", run_args(group_size=65), Says("group size / k must be between 1 and 64")),
    Case("group-size-fraction", "/run", run_args(group_size=1.5), Says("group size / k must be a whole number")),
    Case("group-size-word", "/run", run_args(group_size="hot"), Says("group size / k must be a whole number")),
    Case("group-size-null", "/run", run_args(group_size=None), Says("group size / k must be a whole number")),
    Case("group-size-bool", "/run", run_args(group_size=True), Says("group size / k must be a whole number")),
    Case("group-size-list", "/run", run_args(group_size=[2]), Says("group size / k must be a whole number")),
    Case("group-size-nan", "/run", run_args(group_size=NAN), Says("group size / k must be a whole number"), raw=True),
    Case("group-size-inf", "/run", run_args(group_size=INF), Says("group size / k must be a whole number"), raw=True),
    Case("group-size-1e308", "/run", run_args(group_size=1e308), Says("group size / k must be between 1 and 64")),
    Case("group-size-as-text", "/run", run_args(group_size="2"), done(7)),
    Case("threshold-negative", "/run", run_args(strategy="confidence", threshold=-0.5), Says("threshold must be between 0 and 1")),
    Case("threshold-over-1", "/run", run_args(strategy="confidence", threshold=1.5), Says("threshold must be between 0 and 1")),
    Case("threshold-word", "/run", run_args(strategy="confidence", threshold="hot"), Says("threshold must be a number")),
    Case("threshold-nan", "/run", run_args(strategy="confidence", threshold=NAN), Says("threshold must be between 0 and 1"), raw=True),
    Case("threshold-null-is-off", "/run", run_args(strategy="confidence", threshold=None), done(7)),
    Case("threshold-on-fixed-order", "/run", run_args(threshold=0.5), done(7)),
    Case("custom-empty", "/run", run_args(strategy="custom", custom=""), Says("custom order is empty")),
    Case("custom-word", "/run", run_args(strategy="custom", custom="1 x"), Says("whole numbers")),
    Case("custom-too-few", "/run", run_args(strategy="custom", custom="1"), Says("2 blank")),
    Case("custom-too-many", "/run", run_args(strategy="custom", custom="1 2 3"), Says("2 blank")),
    Case("custom-negative", "/run", run_args(strategy="custom", custom="-1 2"), Says("whole numbers >= 1")),
    Case("custom-exponent", "/run", run_args(strategy="custom", custom="1e9 2"), Says("whole numbers >= 1")),
    Case("custom-huge", "/run", run_args(strategy="custom", custom="99999999999999999999 1"), Says("between 1 and 10000")),
    Case("custom-very-long", "/run", run_args(strategy="custom", custom="1 " * 1500), Says("custom order is 3000 characters long")),
    Case("custom-surrogate", "/run", run_args(strategy="custom", custom="2 \ud800 1"), done(7), raw=True),
    Case("custom-good", "/run", run_args(strategy="custom", custom="2 1", group_size=2), done(7)),
    # -- /run: sampling, seed, model, speed --
    Case("temperature-negative", "/run", run_args(temperature=-1), Says("temperature must be between 0 and 2")),
    Case("temperature-huge", "/run", run_args(temperature=50.0), Says("temperature must be between 0 and 2")),
    Case("temperature-word", "/run", run_args(temperature="hot"), Says("temperature must be a number")),
    Case("temperature-null", "/run", run_args(temperature=None), Says("temperature must be a number")),
    Case("temperature-nan", "/run", run_args(temperature=NAN), Says("temperature must be between 0 and 2"), raw=True),
    Case("temperature-minus-inf", "/run", run_args(temperature=-INF), Says("temperature must be between 0 and 2"), raw=True),
    Case("temperature-denormal", "/run", run_args(temperature=1e-320), done(7), raw=True),
    Case("top-k-negative", "/run", run_args(top_k=-1), Says("top-k must be between 0 and 200")),
    Case("top-k-huge", "/run", run_args(top_k=201), Says("top-k must be between 0 and 200")),
    Case("top-k-fraction", "/run", run_args(top_k=2.5), Says("top-k must be a whole number")),
    Case("top-k-null", "/run", run_args(top_k=None), Says("top-k must be a whole number")),
    Case("top-p-zero", "/run", run_args(top_p=0), Says("top-p must be between 0.05 and 1")),
    Case("top-p-over-1", "/run", run_args(top_p=1.5), Says("top-p must be between 0.05 and 1")),
    Case("top-p-word", "/run", run_args(top_p="x"), Says("top-p must be a number")),
    Case("top-p-inf", "/run", run_args(top_p=INF), Says("top-p must be between 0.05 and 1"), raw=True),
    Case("sampling-extremes", "/run", run_args(temperature=2.0, top_k=1, top_p=0.05, seed=str(2 ** 63 - 1)), done(7)),
    Case("seed-word", "/run", run_args(seed="abc"), Says("seed must be a whole number")),
    Case("seed-negative", "/run", run_args(seed="-1"), Says("seed must be a whole number")),
    Case("seed-fraction", "/run", run_args(seed="1.5"), Says("seed must be a whole number")),
    Case("seed-too-large", "/run", run_args(seed="9" * 30), Says("seed is too large")),
    Case("seed-arabic-digits", "/run", run_args(seed="١٢٣"), Says("seed must be a whole number")),
    Case("seed-superscript", "/run", run_args(seed="²"), Says("seed must be a whole number")),
    Case("seed-very-long", "/run", run_args(seed="1" * 5000), Says("seed is 5000 characters long")),
    Case("seed-spaces", "/run", run_args(seed=" 17 "), done(7)),
    Case("seed-empty-is-0", "/run", run_args(seed=""), done(7)),
    Case("seed-number", "/run", run_args(seed=123), done(7)),
    Case("model-path", "/run", lambda sw: run_args(key=str(sw.ckpt)), Says("unknown model")),
    Case("model-dotdot", "/run", run_args(key="../../etc/passwd"), Says("unknown model")),
    Case("model-unknown", "/run", run_args(key="gpt-5"), Says("pick one from the menu")),
    Case("model-empty", "/run", run_args(key=""), Says("unknown model")),
    Case("model-null", "/run", run_args(key=None), Says("unknown model")),
    Case("model-list", "/run", run_args(key=[KEY]), Says("unknown model")),
    Case("model-case", "/run", run_args(key=KEY.upper()), Says("unknown model")),
    Case("model-nul-byte", "/run", run_args(key=KEY + "\x00"), Says("unknown model")),
    Case("model-base-missing", "/run", run_args(key="a3-smollm2-lora"), Says("python -m model.smollm fetch")),
    Case("speed-word", "/run", run_args(template=ONE, speed="hot"), done(1)),
    Case("speed-negative", "/run", run_args(template=ONE, speed=-5), done(1)),
    Case("speed-huge", "/run", run_args(template=ONE, speed=1e9), done(1)),
    Case("speed-null", "/run", run_args(template=ONE, speed=None), done(1)),
    Case("speed-nan", "/run", run_args(template=ONE, speed=NAN), done(1), raw=True),
    # -- the story endpoints: (text, model, custom order) etc.; the info line says what is wrong --
    Case("story-model-path", "/story", lambda sw: ["x [[2]] y", str(sw.ckpt), ""], Says("unknown model")),
    Case("story-model-dotdot", "/story", ["x [[2]] y", "../" * 8 + "etc", ""], Says("unknown model")),
    Case("story-base-missing", "/story", ["x [[2]] y", "a3-smollm2-lora", ""], Says("python -m model.smollm fetch")),
    Case("story-bad-blank", "/story", ["A cat [[x]] sat.", KEY, ""], Says("number of tokens")),
    Case("story-huge", "/story", ["x" * 200_000, KEY, ""], Says("longer than 100000 characters")),
    Case("story-none", "/story", [None, KEY, ""], Says("empty")),
    Case("story-xss", "/story", ["<img src=x onerror=alert(1)> [[2]] **b**", KEY, ""],
         info(lambda i, t: "1 blank" in i and t.startswith("<img"), "markup kept in the text, one blank")),
    Case("story-surrogate", "/story", ["Lone \ud800 here [[2]] end.", KEY, "\udc00"],
         info(lambda i, t: "1 blank" in i and "\ud800" not in t, "the surrogate removed, one blank"), raw=True),
    Case("story-custom-garbage", "/story", ["A [[1]] b [[2]] c", KEY, "x y z"], info(lambda i, t: "2 blanks" in i, "two blanks")),
    Case("example-word", "/example", ["abc", KEY, ""], Says("example number must be a whole number")),
    Case("example-negative", "/example", [-1, KEY, ""], Says("example number must be between 0 and")),
    Case("example-huge", "/example", [10 ** 9, KEY, ""], Says("example number must be between 0 and")),
    Case("example-null", "/example", [None, KEY, ""], Says("example number must be a whole number")),
    Case("example-fraction", "/example", [1.5, KEY, ""], Says("example number must be a whole number")),
    Case("example-list", "/example", [[0], KEY, ""], Says("example number must be a whole number")),
    Case("example-nan", "/example", [NAN, KEY, ""], Says("example number must be a whole number"), raw=True),
    Case("example-unknown-model", "/example", [0, "nope", ""], Says("unknown model")),
    Case("example-first", "/example", [0, KEY, ""], info(lambda i, t: "tokens with the BOS" in i and len(t) > 50, "the first example")),
    Case("example-as-text", "/example", ["1", KEY, ""], info(lambda i, t: "tokens with the BOS" in i, "the second example")),
    Case("editor-text", "/editor", ["abc", 0, KEY, "", False], Says("must be a list of pieces")),
    Case("editor-number", "/editor", [5, 0, KEY, "", False], Says("must be a list of pieces")),
    Case("editor-dict", "/editor", [{"token": "a"}, 0, KEY, "", False], Says("must be a list of pieces")),
    Case("editor-token-number", "/editor", [[{"token": 5}], 0, KEY, "", False], Says("piece 1: its token must be text")),
    Case("editor-triple", "/editor", [[[1, 2, 3]], 0, KEY, "", False], Says("editor piece 1 must be")),
    Case("editor-label-object", "/editor", [[{"token": "a", "class_or_confidence": {"x": 1}}], 0, KEY, "", False],
         Says("its label must be text, a number or empty")),
    Case("editor-wrong-keys", "/editor", [[{"tok": "a"}], 0, KEY, "", False], Says("editor piece 1 must be")),
    Case("editor-null-piece", "/editor", [[None], 0, KEY, "", False], Says("editor piece 1 must be")),
    Case("editor-too-many", "/editor", [[{"token": "a", "class_or_confidence": None}] * 30_000, 0, KEY, "", False],
         Says("at most 20000 are accepted")),
    Case("editor-too-much-text", "/editor", [[{"token": "x" * 60_000, "class_or_confidence": None}] * 2, 0, KEY, "", False],
         Says("longer than 100000 characters")),
    Case("editor-length-word", "/editor", [[{"token": "a", "class_or_confidence": None}], "abc", KEY, "", False],
         Says("new blank length must be a whole number")),
    Case("editor-length-negative", "/editor", [[{"token": "a", "class_or_confidence": None}], -1, KEY, "", False],
         Says("new blank length must be between 0 and 1024")),
    Case("editor-length-huge", "/editor", [[{"token": "a", "class_or_confidence": None}], 5000, KEY, "", False],
         Says("new blank length must be between 0 and 1024")),
    Case("editor-length-nan", "/editor", [[{"token": "a", "class_or_confidence": None}], NAN, KEY, "", False],
         Says("new blank length must be a whole number"), raw=True),
    Case("editor-model-path", "/editor", lambda sw: [[{"token": "a", "class_or_confidence": None}], 0, str(sw.ckpt), "", False],
         Says("unknown model")),
    Case("editor-empty", "/editor", [[], 0, KEY, "", False], unchanged),
    Case("editor-null", "/editor", [None, 0, KEY, "", False], unchanged),
    Case("editor-selection", "/editor", [[{"token": "The cat ", "class_or_confidence": None},
                                          {"token": "sat", "class_or_confidence": "x"},
                                          {"token": " on the mat.", "class_or_confidence": None}], 0, KEY, "", False],
         info(lambda i, t: "1 blank" in i and t.startswith("The cat [["), "the selection turned into a blank")),
    Case("editor-resize-huge", "/editor", [[{"token": "A ", "class_or_confidence": None},
                                            {"token": "[[2]]", "class_or_confidence": "999999"},
                                            {"token": " b", "class_or_confidence": None}], 0, KEY, "", False], Says("context")),
    Case("editor-surrogate", "/editor", [[{"token": "The \ud800cat ", "class_or_confidence": None},
                                          {"token": "sat", "class_or_confidence": "x"}], 0, KEY, "", False],
         info(lambda i, t: "1 blank" in i and "\ud800" not in t, "the surrogate removed, one blank"), raw=True),
    Case("words-fraction-word", "/blank_words", ["The cat sat on the mat.", "hot", KEY, ""], Says("fraction of words to blank must be a number")),
    Case("words-fraction-zero", "/blank_words", ["The cat sat on the mat.", 0, KEY, ""], Says("fraction of words to blank must be between 0.05 and 0.5")),
    Case("words-fraction-two", "/blank_words", ["The cat sat on the mat.", 2, KEY, ""], Says("fraction of words to blank must be between 0.05 and 0.5")),
    Case("words-fraction-null", "/blank_words", ["The cat sat on the mat.", None, KEY, ""], Says("fraction of words to blank must be a number")),
    Case("words-fraction-nan", "/blank_words", ["The cat sat on the mat.", NAN, KEY, ""], Says("fraction of words to blank must be between"), raw=True),
    Case("words-huge-text", "/blank_words", ["x " * 60_000, 0.15, KEY, ""], Says("characters long")),
    Case("words-good", "/blank_words", ["The cat sat on the mat. It was warm.", 0.3, KEY, ""],
         info(lambda i, t: "[[" in t, "some words blanked")),
    Case("sentence-empty", "/blank_sentence", ["", 0.15, KEY, ""], Says("no visible sentence")),
    Case("sentence-model-path", "/blank_sentence", lambda sw: ["The cat sat.", 0.15, str(sw.ckpt), ""], Says("unknown model")),
    Case("sentence-bad-blank", "/blank_sentence", ["A [[x]] b. C d.", 0.15, KEY, ""], Says("number of tokens")),
    Case("restore-nothing", "/restore", ["A [[2]] b.", 0.15, KEY, ""],
         info(lambda i, t: "No blank remembers" in i, "a note that no blank remembers its text")),
    Case("restore-null-text", "/restore", [None, 0.15, KEY, ""], info(lambda i, t: "No blank remembers" in i, "a note")),
    # -- /load_run: run files --
    Case("file-not-json", "/load_run", run_file("not-json", text="hello"), Says("not JSON")),
    Case("file-empty", "/load_run", run_file("empty", text=""), Says("not JSON")),
    Case("file-binary", "/load_run", run_file("binary", text=b"\xff\xfe\x00\x81"), Says("not UTF-8")),
    Case("file-over-20mb", "/load_run", run_file("huge", text=b" " * 20_000_001), Says("larger than 20 MB")),
    Case("file-deep-nesting", "/load_run", run_file("deep", text="[" * 100_000), Says("nests lists and objects 100000 deep")),
    Case("file-deep-objects", "/load_run", run_file("deep-objects", text='{"a":' * 50_000 + "1" + "}" * 50_000),
         Says("nests lists and objects 50000 deep")),
    Case("file-nesting-in-record", "/load_run", run_file("nested-20", text=nested(20)), Says("at most 16")),
    Case("file-brackets-in-strings", "/load_run", run_file("brackets", text=json.dumps({"format": "[" * 1000})),
         Says("'format' must be")),
    Case("file-array", "/load_run", run_file("array", text="[]"), Says("'format' must be")),
    Case("file-format", "/load_run", run_file("format", lambda r: r.update(format="other")), Says("'format' must be")),
    Case("file-version", "/load_run", run_file("version", lambda r: r.update(version=2)), Says("'version' must be 1")),
    Case("file-version-text", "/load_run", run_file("version-text", lambda r: r.update(version="1")), Says("'version' must be 1")),
    Case("file-ids-missing", "/load_run", run_file("ids-missing", lambda r: r.pop("input_ids")), Says("input_ids must be a list")),
    Case("file-ids-text", "/load_run", run_file("ids-text", lambda r: r.update(input_ids=["a"] * len(r["input_ids"]))),
         Says("input_ids[0] must be a whole number")),
    Case("file-ids-negative", "/load_run", run_file("ids-neg", lambda r: r["input_ids"].__setitem__(1, -5)),
         Says("input_ids[1] must be from 0")),
    Case("file-300k-positions", "/load_run", run_file("pos300k", positions(300_000)),
         Says("input_ids holds 300001 positions; this server's models take 2 to")),
    Case("file-one-position", "/load_run", run_file("pos1", lambda r: r.update(input_ids=[0], blank_mask=[False])),
         Says("input_ids holds 1 positions")),
    Case("file-mask-length", "/load_run", run_file("mask-len", lambda r: r["blank_mask"].pop()), Says("blank_mask must hold")),
    Case("file-mask-ints", "/load_run", run_file("mask-int", lambda r: r.update(blank_mask=[int(b) for b in r["blank_mask"]])),
         Says("blank_mask must hold true or false")),
    Case("file-mask-bos", "/load_run", run_file("mask-bos", lambda r: r["blank_mask"].__setitem__(0, True)), Says("BOS")),
    Case("file-mask-no-blank", "/load_run", run_file("mask-none", lambda r: r.update(blank_mask=[False] * len(r["blank_mask"]))),
         Says("blank_mask has no blank")),
    Case("file-layout-text", "/load_run", run_file("layout-str", lambda r: r.update(layout="x")), Says("layout must be a list")),
    Case("file-layout-kind", "/load_run", run_file("layout-kind", lambda r: r["layout"][0].update(kind="image")),
         Says("layout[0].kind must be")),
    Case("file-layout-text-type", "/load_run", run_file("layout-tt", lambda r: r["layout"][0].update(text=5)),
         Says("layout[0].text must be text")),
    Case("file-layout-position", "/load_run", run_file("layout-pos", lambda r: r["layout"][0].update(positions=[10 ** 6])),
         Says("layout[0].positions[0] must be from 1")),
    Case("file-layout-mismatch", "/load_run", run_file("layout-mm", lambda r: r["layout"][1].update(positions=[1])),
         Says("layout")),
    Case("file-layout-original", "/load_run", run_file("layout-orig", lambda r: r["layout"][1].update(original=7)),
         Says("layout[1].original must be text")),
    Case("file-steps-object", "/load_run", run_file("steps-obj", lambda r: r.update(steps={})), Says("steps must be a list")),
    Case("file-50k-empty-steps", "/load_run", run_file("empty50k", empty_steps(50_000), speed=0.15),
         Says("steps holds 50000 steps but the run has 7 blank positions")),
    Case("file-empty-step", "/load_run", run_file("empty-step", step0(positions=[], token_ids=[], tokens=[], probs=[],
                                                                       alternatives=[], entropy=[])),
         Says("steps[0].positions must list the positions it fills")),
    Case("file-step-index", "/load_run", run_file("index", step0(index=5)), Says("steps[0].index must be 0")),
    Case("file-step-repeats", "/load_run", run_file("repeat", lambda r: r["steps"][1].update(positions=r["steps"][0]["positions"])),
         Says("steps[1].positions[0] is not an open blank")),
    Case("file-step-bos", "/load_run", run_file("bos", step0(positions=[0])), Says("open blank")),
    Case("file-step-token-type", "/load_run", run_file("tok", step0(tokens=[5])), Says("steps[0].tokens[0] must be text")),
    Case("file-step-prob-range", "/load_run", run_file("prob", step0(probs=[1.5])), Says("steps[0].probs[0] must be from 0 to 1")),
    Case("file-step-prob-nan", "/load_run", run_file("prob-nan", step0(probs=[NAN])), Says("steps[0].probs[0] must be a finite number")),
    Case("file-step-prob-text", "/load_run", run_file("prob-text", step0(probs=["0.5"])), Says("steps[0].probs[0] must be a finite number")),
    Case("file-step-entropy", "/load_run", run_file("entropy", step0(entropy=[-1])), Says("steps[0].entropy[0] must be from 0")),
    Case("file-step-lengths", "/load_run", run_file("lengths", step0(tokens=["a", "b"])), Says("steps[0].tokens must hold 1 entries")),
    Case("file-alternatives-short", "/load_run", run_file("alts1", step0(alternatives=[["a"]])),
         Says("steps[0].alternatives[0][0] must be [text, probability]")),
    Case("file-alternatives-number", "/load_run", run_file("alts2", step0(alternatives=[[[1, 0.5]]])),
         Says("steps[0].alternatives[0][0][0] must be text")),
    Case("file-alternatives-prob", "/load_run", run_file("alts3", step0(alternatives=[[["a", "x"]]])),
         Says("steps[0].alternatives[0][0][1] must be a finite number")),
    Case("file-alternatives-text", "/load_run", run_file("alts4", step0(alternatives="abc")), Says("steps[0].alternatives must be a list")),
    Case("file-alternatives-many", "/load_run", run_file("alts5", step0(alternatives=[[["a", 0.1]] * 60])),
         Says("steps[0].alternatives[0] must hold 0 to 50")),
    Case("file-forward-passes", "/load_run", run_file("fp", step0(forward_passes="x")), Says("steps[0].forward_passes must be a whole number")),
    Case("file-elapsed", "/load_run", run_file("elapsed", step0(elapsed=-1)), Says("steps[0].elapsed must be from 0")),
    Case("file-pending", "/load_run", run_file("pending", step0(pending=None)), Says("steps[0].pending must be a whole number")),
    Case("file-token-surrogate", "/load_run", run_file("tok-sur", step0(tokens=["\ud800"])), Says("lone surrogate")),
    Case("file-template-surrogate", "/load_run", run_file("tpl-sur", setting(template="a \udfff [[3]]")), Says("settings.template holds a lone surrogate")),
    Case("file-settings-object", "/load_run", run_file("settings", lambda r: r.update(settings=[])), Says("settings must be an object")),
    Case("file-settings-temperature", "/load_run", run_file("temp", setting(temperature=1e9)), Says("settings: temperature must be between 0 and 2")),
    Case("file-settings-strategy", "/load_run", run_file("strat", setting(strategy="zigzag")), Says("settings: unknown strategy")),
    Case("file-settings-seed", "/load_run", run_file("seed", setting(seed=-1)), Says("settings.seed must be from 0")),
    Case("file-settings-seed-text", "/load_run", run_file("seed-text", setting(seed="abc")), Says("settings.seed must be a whole number")),
    Case("file-settings-template-type", "/load_run", run_file("tpl-type", setting(template=5)), Says("settings.template must be text")),
    Case("file-settings-context", "/load_run", run_file("context", setting(context="sideways")), Says("settings.context must be")),
    Case("file-settings-empty", "/load_run", run_file("settings-empty", lambda r: r.update(settings={})), replays(7)),
    Case("file-stats-empty", "/load_run", run_file("stats0", lambda r: r.update(stats={})), replays(7)),
    Case("file-stats-types", "/load_run", run_file("stats1", lambda r: r.update(stats={k: "x" for k in r["stats"]})),
         Gives(lambda fr: plain(fr[-1][3]).startswith("Done: 7 tokens in 7 steps"), "stats recomputed from the steps")),
    Case("file-stats-lies", "/load_run", run_file("stats2", lambda r: r["stats"].update(tokens=10 ** 6, decode_seconds=-1)),
         Gives(lambda fr: plain(fr[-1][3]).startswith("Done: 7 tokens in 7 steps"), "stats recomputed from the steps")),
    Case("file-model-hostile", "/load_run", run_file("model", lambda r: r.update(model={"path": "/etc/passwd", "label": "<b>x</b>"})),
         Gives(lambda fr: "&lt;b&gt;" in fr[0][3] and "passwd" not in json.dumps(fr), "the label escaped, the path unused")),
    Case("file-fills-malformed", "/load_run", run_file("fills", lambda r: r.update(fills=[1, 2])), replays(7)),
    Case("file-speed-word", "/load_run", run_file("speed", lambda r: None, speed="hot"), replays(7)),
    # -- /replay, /scrub (this client's session holds the last good run), /compare --
    Case("replay-speed-word", "/replay", ["hot"], Gives(lambda fr: plain(fr[-1][3]).startswith("Done:") and len(fr) <= 303,
                                                         "the session's last run replayed, in at most 303 frames")),
    Case("replay-no-session", "/replay", [0], Gives(lambda fr: "Nothing to replay yet" in fr[-1][3], "a note that there is no run"), raw=True),
    Case("scrub-word", "/scrub", ["abc"], Says("replay step must be a whole number")),
    Case("scrub-negative", "/scrub", [-1], Says("replay step must be between 0 and")),
    Case("scrub-huge", "/scrub", [10 ** 6], Says("replay step must be between 0 and")),
    Case("scrub-null", "/scrub", [None], Says("replay step must be a whole number")),
    Case("scrub-fraction", "/scrub", [1.5], Says("replay step must be a whole number")),
    Case("scrub-nan", "/scrub", [NAN], Says("replay step must be a whole number"), raw=True),
    Case("scrub-no-session", "/scrub", [1], Says("nothing to scrub yet"), raw=True),
    Case("scrub-good", "/scrub", [1], Gives(lambda fr: plain(fr[-1][1]).startswith("Step 1 of"), "step 1 shown")),
    Case("compare-order-a", "/compare", cmp_args(a_strategy="zigzag"), Says("order A: unknown strategy")),
    Case("compare-size-b", "/compare", cmp_args(b_size="hot"), Says("order B: group size / k must be a whole number")),
    Case("compare-custom-a", "/compare", cmp_args(a_strategy="custom", a_custom="1"), Says("order A:")),
    Case("compare-model-path", "/compare", lambda sw: cmp_args(key=str(sw.ckpt)), Says("unknown model")),
    Case("compare-temperature-nan", "/compare", cmp_args(temperature=NAN), Says("temperature must be between 0 and 2"), raw=True),
    Case("compare-seed", "/compare", cmp_args(seed="x"), Says("seed must be a whole number")),
    Case("compare-good", "/compare", cmp_args(), Gives(lambda fr: "Done" in plain(fr[-1][6]), "both orders done")),
    # last: it leaves a 900-step run in the session, which the /replay cases above would animate
    Case("file-long-run", "/load_run", run_file("long", long_run(900)), replays(900, max_frames=1 + 300)),
]


def test_the_sweep_is_big_enough():
    assert len(CASES) >= 100, f"the sweep should hold at least 100 kinds of input; it holds {len(CASES)}"
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), f"case ids repeat: {sorted(i for i in ids if ids.count(i) > 1)}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_input_gets_a_clear_answer(sweep, case):
    args = case.args(sweep) if callable(case.args) else case.args
    t0 = time.monotonic()
    frames, err = (via_http(sweep.url, case.api, args) if case.raw else via_client(sweep.client, case.api, args))
    took = time.monotonic() - t0
    assert err is None, f"{case.api} gave an error instead of an answer ({took:.1f} s): {err}"
    assert frames, f"{case.api} gave no reply"
    blob = json.dumps(frames)
    for where in (str(sweep.ckpt.parent), str(ROOT)):
        assert where not in blob, f"the reply shows a server path ({where})"
    assert "failed on the server" not in blob, f"an unexpected exception reached the page: {blob[:300]}"
    at = STATUS_AT.get(case.api, 3)
    said = [plain(f[at]) for f in frames if len(f) > at and isinstance(f[at], str)]
    if isinstance(case.expect, Says):
        warned = [s for s in said if s.startswith("⚠️")]
        assert warned, f"expected a message holding {case.expect.fragment!r}; got {said[:3]} ({took:.1f} s)"
        assert any(case.expect.fragment in s for s in warned), f"the message should hold {case.expect.fragment!r}: {warned}"
    else:
        assert not any(s.startswith("⚠️") for s in said), f"expected {case.expect.what}, got a refusal: {said}"
        assert case.expect.check(frames), f"expected {case.expect.what}; last frame: {str(frames[-1])[:400]}"


# ----------------------------------------------------------------------------------------------
# what is not a case: the page's config, Gradio's own refusals, the animation's caps


def test_no_server_path_in_the_config_or_the_api_info(sweep):
    for route in ("config", "gradio_api/info"):
        text = httpx.get(sweep.url + route, timeout=TIMEOUT).text
        assert str(sweep.ckpt) not in text and str(ROOT) not in text, f"/{route} shows a server path"
    choices = [c for c in httpx.get(sweep.url + "config", timeout=TIMEOUT).json()["components"]
               if c.get("props", {}).get("elem_id") == "model"][0]["props"]["choices"]
    keys = [v for _, v in choices]
    assert keys[0] == KEY and "a3-austen-tiny" in keys, f"menu keys should be folder names: {keys}"
    assert all("/" not in k for k in keys), f"a menu key looks like a path: {keys}"


@pytest.mark.parametrize("api, args", [
    ("load_run", ["not a file", 0]),
    ("load_run", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, 0]),
    ("load_run", [{}, 0]),
    ("run", [STORY, KEY]),
], ids=["upload-text", "upload-outside-cache", "upload-empty-object", "too-few-values"])
def test_gradio_refuses_what_is_not_a_request(sweep, api, args):
    """These never reach the app: Gradio refuses an upload that is not a file it received (its
    path check keeps files outside its cache unreadable) and a request with too few values. The
    refusal is quick, shows nothing of the server, and the app goes on."""
    t0 = time.monotonic()
    frames, err = via_http(sweep.url, api, args)
    assert err is not None and time.monotonic() - t0 < TIMEOUT, "Gradio should refuse this, at once"
    assert "root:" not in err and "/etc/passwd" not in json.dumps(frames), "nothing of the file may come back"
    frames, err = via_client(sweep.client, "/run", run_args(template=ONE))
    assert err is None and plain(frames[-1][3]).startswith("Done: 1"), f"the app should go on serving: {err}"


def test_animation_caps_frames_and_time(monkeypatch):
    """At most MAX_FRAMES frames, evenly spaced, always ending on the last step; and the pause
    between frames, however slow the chosen speed, never stretches it past MAX_ANIMATION_S."""
    from app import run_events

    for n in (1, 7, 300, 301, 5000, 50_000):
        ks = run_events.frame_steps(n)
        assert ks[-1] == n and len(ks) <= run_events.MAX_FRAMES, f"{n} steps: {len(ks)} frames, last {ks[-1]}"
        assert ks == sorted(set(ks)) and ks[0] >= 1, f"{n} steps: frames must go forward"
        gaps = [b - a for a, b in zip([0] + ks, ks)]
        assert max(gaps) - min(gaps) <= 1, f"{n} steps: frames should be evenly spaced, gaps {min(gaps)}-{max(gaps)}"
    monkeypatch.setattr(run_events, "MAX_ANIMATION_S", 0.5)
    t0 = time.monotonic()
    shown = list(run_events.paced(run_events.frame_steps(5000), 2.0))
    took = time.monotonic() - t0
    assert took < 0.5 + 0.3, f"the animation took {took:.2f} s; the cap is 0.5 s"
    assert shown[-1] == 5000, "the last step is always shown"


def test_run_file_depth_is_measured_without_parsing():
    from app.run_schema import MAX_DEPTH, json_depth

    assert json_depth('{"a": [1, {"b": "[[[[["}]}') == 3, "brackets inside strings do not count"
    assert json_depth('["\\"[[[", [[]]]') == 3, "an escaped quote does not end a string"
    assert json_depth("[" * 10 ** 6) == 10 ** 6, "a deep file is measured, not parsed"
    assert json_depth('"' + "\\\"[" * 10 ** 5) == 0, "an unterminated string is one string (and linear to scan)"
    assert MAX_DEPTH >= 6, "a record nests 6 deep"


def test_the_input_widgets_are_gradios_own_and_write_nothing_into_the_tree():
    """request.py's widgets are drawn by Gradio's front end and pass values as sent; defining
    them leaves no .pyi stub next to the app (Gradio writes one for every component class)."""
    import gradio as gr

    from app import request

    with gr.Blocks():
        widgets = [request.Slider(0, 1), request.Number(0), request.Dropdown(["a"]), request.StoryEditor([])]
    assert [w.get_block_name() for w in widgets] == ["slider", "number", "dropdown", "highlightedtext"], \
        "each widget must use the front end of the Gradio component it extends"
    assert all(w.preprocess("hot") == "hot" for w in widgets), "a value must reach the handler as sent"
    assert not sorted((ROOT / "app").glob("*.pyi")), "no stub file may be written next to the app"


def test_lone_surrogates_never_reach_a_record():
    from app.request import RunRequest

    s = RunRequest.check("a \ud800 [[2]]\x00", "custom", 1, 0, "2 \udfff 1", 0, 0, 1, "0").settings
    assert "\ud800" not in s["template"] and "\x00" not in s["template"], "the template is stored cleaned"
    assert "\udfff" not in s["custom_order"], "the custom order is stored cleaned"
    json.dumps(s, ensure_ascii=False).encode("utf-8")  # raises if a surrogate were left


def test_menu_keys_are_names_made_unique(monkeypatch, tmp_path):
    """$A3_MODEL_DIR's folder gets its name as its key, with a suffix when it clashes."""
    from app import model_menu

    src = model_menu.SHIPPED
    if not (src / "config.json").is_file():
        pytest.skip("needs the shipped checkpoint")
    clash = tmp_path / "a3-austen-tiny"
    clash.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (clash / f.name).symlink_to(f)
    monkeypatch.setenv("A3_MODEL_DIR", str(clash))
    keys = [e.key for e in model_menu.available_models()]
    assert keys[:2] == ["a3-austen-tiny-2", "a3-austen-tiny"], f"the clash should get a suffix: {keys}"
    assert len(set(keys)) == len(keys), f"menu keys must be unique: {keys}"
    with pytest.raises(ValueError, match="unknown model"):
        model_menu.menu_entry(str(src))
    assert model_menu.menu_entry("a3-austen-tiny-2").path == clash, "the key resolves to its folder"
