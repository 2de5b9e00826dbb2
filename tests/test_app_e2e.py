"""The app end to end: launched on 127.0.0.1 with a tiny random checkpoint written here, driven
through gradio_client, streamed frames iterated. Checks that visible text never changes, every
blank is filled, the step count matches the order, and every bad input gets a clear message
while the page keeps working."""
import json
import math
import os
import re
import socket

import pytest
import torch
from gradio_client import Client
from transformers import LlamaConfig, LlamaForCausalLM

from model.core.a3 import A3Model

CONTEXT = 256  # the example stories are ~170 tokens with the small test tokenizer
STORY = "Anne had not expected a letter. She [[3]] it twice, and then [[4]] by the fire."
TOTAL = 7
OUT = ["result", "caption", "replay", "status", "stats", "filled", "order", "tokens", "download", "cands", "cand_pick"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_tiny_checkpoint(path, tok=None):
    """A tiny untrained A3 checkpoint, by default with a BPE trained on the example stories."""
    from app.fallback import example_texts
    from model.corpus.austen import train_tokenizer

    tok = tok or train_tokenizer(example_texts(), vocab_size=500)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
                      initializer_range=0.3, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    torch.manual_seed(0)
    A3Model(LlamaForCausalLM(cfg)).eval().save_pretrained(path, tokenizer=tok)
    return path


def tiny_menu(tmp_path_factory):
    """(checkpoint, MonkeyPatch): a tiny checkpoint written here as the menu's model ($A3_MODEL_DIR)
    and an empty cache ($A3_STUDIO_CACHE: no SmolLM2 base); undo the MonkeyPatch when done."""
    ckpt = write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
    mp = pytest.MonkeyPatch()
    mp.setenv("A3_MODEL_DIR", str(ckpt))
    mp.setenv("A3_STUDIO_CACHE", str(tmp_path_factory.mktemp("cache")))
    return ckpt, mp


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(client, checkpoint key) of a running app; closed at the end."""
    _, mp = tiny_menu(tmp_path_factory)
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    from app.model_menu import available_models
    from app.ui import build_demo

    demo = build_demo()
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    client = Client(demo.local_url, verbose=False)
    key = available_models()[0].key
    assert key == "tiny", f"the menu key of $A3_MODEL_DIR should be its folder's name, not a path: {key!r}"
    try:
        yield client, key
    finally:
        client.close()
        demo.close()
        mp.undo()


def submit(app, template=STORY, strategy="left_to_right", group_size=1, threshold=0, custom="", temperature=0,
           top_k=0, top_p=1, seed="0", speed=0, candidates=1, pool="orders"):
    client, key = app
    return client.submit(template, key, strategy, group_size, threshold, custom, temperature, top_k, top_p, seed,
                         speed, candidates, pool, api_name="/run")


def run(app, **kw):
    """Every streamed frame of one /run call, each as a dict of the named outputs."""
    return [dict(zip(OUT, f)) for f in submit(app, **kw)]


def visible(spans):
    return [s["token"] for s in spans if s["class_or_confidence"] is None]


def expected_visible(template):
    """The template's text around its blanks (each blank owns the one space before it)."""
    return [t for t in re.split(r" ?\[\[\d+\]\]", template) if t]


def stats(frame):
    return dict(frame["stats"]["data"])


@pytest.mark.parametrize("strategy, size, custom, steps", [
    ("left_to_right", 1, "", TOTAL),
    ("right_to_left", 2, "", math.ceil(TOTAL / 2)),
    ("outside_in", 3, "", math.ceil(TOTAL / 3)),
    ("random", 1, "", TOTAL),
    ("confidence", 2, "", math.ceil(TOTAL / 2)),
    ("margin", 3, "", math.ceil(TOTAL / 3)),
    ("custom", 2, "2 1", 2 + 2),  # blank 2 (4 tokens, 2 steps), then blank 1 (3 tokens, 2 steps)
])
def test_run_fills_every_blank(app, strategy, size, custom, steps):
    frames = run(app, strategy=strategy, group_size=size, custom=custom)
    first, last = frames[0], frames[-1]
    assert "Step 0" in first["caption"], "the first frame shows the blanks before any step"
    pending0 = [s for s in first["result"] if s["class_or_confidence"] == "blank"]
    assert len(pending0) == TOTAL
    assert visible(last["result"]) == expected_visible(STORY), "visible text must not change"
    assert all(s["class_or_confidence"] != "blank" for s in last["result"]), "every blank filled"
    filled = [s for s in last["result"] if s["class_or_confidence"] is not None]
    assert len(filled) == TOTAL
    st = stats(last)
    assert int(st["steps"]) == steps and int(st["forward passes"]) == steps
    assert f"Step {steps} of {steps}" in last["caption"]
    # the animation went step by step: committed tokens never decrease
    done = [sum(s["class_or_confidence"] not in (None, "blank") for s in f["result"])
            for f in frames if isinstance(f["result"], list)]
    assert done == sorted(done) and done[-1] == TOTAL
    assert last["filled"].startswith("Anne had not expected a letter. She")
    assert last["order"] and last["tokens"], "both plots on the last frame"


def test_threshold_mode_commits_at_least_one_per_step(app):
    st = stats(run(app, strategy="entropy", group_size=1, threshold=0.5)[-1])
    assert 1 <= int(st["steps"]) <= TOTAL


def test_sampling_is_reproducible_with_a_seed(app):
    a = run(app, temperature=1.0, top_k=50, top_p=0.9, seed="123")[-1]["filled"]
    b = run(app, temperature=1.0, top_k=50, top_p=0.9, seed="123")[-1]["filled"]
    assert a == b


@pytest.mark.parametrize("kwargs, says", [
    (dict(template=""), "empty"),
    (dict(template="   \n "), "empty"),
    (dict(template="No blanks in this story."), "no blank"),
    (dict(template="[[5]]"), "everything is blank"),
    (dict(template="A long one: [[300]]."), "context"),
    (dict(template="A [[1000000]] one."), "1 to 1024"),
    (dict(template="A [[two]] words."), "number of tokens"),
    (dict(strategy="custom", custom="1 x"), "whole numbers"),
    (dict(strategy="custom", custom="1"), "2 blank"),
    (dict(strategy="custom", custom=""), "custom order is empty"),
    (dict(seed="abc"), "seed must be a whole number"),
    (dict(seed="-1"), "seed must be a whole number"),
])
def test_bad_input_gives_a_message(app, kwargs, says):
    frames = run(app, **kwargs)
    assert len(frames) == 1, "a refused request yields one frame, the message"
    assert says in frames[0]["status"].replace("\\", ""), frames[0]["status"]
    assert frames[0]["status"].startswith("⚠️")


@pytest.mark.parametrize("kwargs, says", [
    (dict(temperature=50.0), "temperature must be between 0 and 2"),
    (dict(top_p=0.0), "top-p must be between 0.05 and 1"),
    (dict(top_k=-3), "top-k must be between 0 and 200"),
    (dict(group_size=0), "group size / k must be between 1 and 64"),
])
def test_out_of_range_values_are_refused_with_the_widgets_name(app, kwargs, says):
    """Values outside a slider's range (only an API client sends them) reach the app's own
    checks, which name the widget and its range, like every other refusal."""
    job = submit(app, **kwargs)
    frames = list(job)
    assert job.exception() is None, f"a refusal is a message on the page, not an error: {job.exception()}"
    assert len(frames) == 1 and frames[0][3].startswith("⚠️"), f"one frame with the message: {frames}"
    assert says in frames[0][3].replace("\\", ""), frames[0][3]


def test_extreme_but_valid_sampling_values_run(app):
    last = run(app, temperature=2.0, top_k=1, top_p=0.05, seed=str(2 ** 63 - 1))[-1]
    assert int(stats(last)["tokens generated"]) == TOTAL


def test_markup_and_control_characters_are_text(app):
    story = "<script>alert(1)</script> <b>Bold</b> & \x00\x1b[31m [[3]] end."
    last = run(app, template=story)[-1]
    vis = "".join(visible(last["result"]))
    assert "<script>alert(1)</script> <b>Bold</b> &" in vis, "markup stays literal text"
    assert "\x00" not in vis and "\x1b" not in vis
    assert int(stats(last)["tokens generated"]) == 3


def test_page_keeps_working_after_bad_input(app):
    run(app, template="")
    run(app, seed="zzz")
    assert int(stats(run(app)[-1])["tokens generated"]) == TOTAL


def test_story_endpoints(app):
    client, key = app
    tpl, editor, table, info = client.predict("A cat [[x]] sat.", key, "", api_name="/story")
    assert "number of tokens" in info.replace("\\", "")
    tpl, editor, table, info = client.predict("The cat sat on the mat. It was warm.", 0.15, key, "",
                                              api_name="/blank_sentence")
    assert re.search(r"\[\[\d+\]\]", tpl) and "1 blank" in info
    tpl, editor, table, info = client.predict("The cat sat on the mat. It was warm.", 0.3, key, "",
                                              api_name="/blank_words")
    assert re.search(r"\[\[\d+\]\]", tpl)


def test_download_and_load_back(app):
    client, key = app
    last = run(app, strategy="outside_in", group_size=2)[-1]
    path = last["download"]["value"] if isinstance(last["download"], dict) else last["download"]
    rec = json.loads(open(path, encoding="utf-8").read())
    assert rec["format"] == "a3-studio-run" and rec["settings"]["strategy"] == "outside_in"
    assert len(rec["steps"]) == math.ceil(TOTAL / 2) and rec["settings"]["seed"] == 0
    from gradio_client import handle_file
    frames = list(client.submit(handle_file(path), 0, api_name="/load_run"))
    assert frames[-1][0] == last["result"], "the replayed run ends where the original did"
    assert frames[0][11] == STORY, "the settings come back with the run (after the 11 run outputs)"
    bad = os.path.join(os.path.dirname(path), "bad.json")
    with open(bad, "w") as f:
        f.write('{"format": "something else"}')
    frames = list(client.submit(handle_file(bad), 0, api_name="/load_run"))
    assert "not a valid A3 Studio run file" in frames[0][3]
    rec["settings"]["temperature"] = 1e9
    with open(bad, "w") as f:
        json.dump(rec, f)
    frames = list(client.submit(handle_file(bad), 0, api_name="/load_run"))
    status = frames[0][3].replace("\\", "")
    assert "settings: temperature must be between 0 and 2" in status, f"the message names the field: {status}"


def test_compare_two_orders(app):
    client, key = app
    frames = list(client.submit(STORY, key, 0, 0, 1, "0", 0, "left_to_right", 1, 0, "", "confidence", 7, 0, "",
                                api_name="/compare"))
    last = frames[-1]
    table = dict((r[0], (r[1], r[2])) for r in last[7]["data"])
    assert table["steps"] == (str(TOTAL), "1"), "k=7 commits the whole blank set in one step"
    assert "log p, left-to-right" in table and "Done" in last[6]


def test_stop_cancels_a_run_and_the_app_goes_on(app):
    client, key = app
    job = client.submit(STORY, key, "left_to_right", 1, 0, "", 0, 0, 1, "0", 1.0, 1, "orders", api_name="/run")
    it = iter(job)
    next(it)
    job.cancel()
    assert int(stats(run(app)[-1])["tokens generated"]) == TOTAL


def test_replay_and_scrub_use_the_last_run_of_the_session(app):
    client, key = app
    last = run(app, strategy="right_to_left", group_size=3)[-1]
    spans, caption, _ = client.predict(1, api_name="/scrub")
    assert caption.startswith("Step 1 of 3")
    labels = [s["class_or_confidence"] for s in spans if s["class_or_confidence"] is not None]
    assert labels.count("blank") == TOTAL - 3 and sum(lab.startswith("new") for lab in labels) == 3
    frames = list(client.submit(0, api_name="/replay"))
    assert frames[-1][0] == last["result"] and len(frames) == 3 + 1
