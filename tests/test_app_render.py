"""The app's pure functions, without a server: run record -> text spans, captions, stats, figures,
JSON; the story editor's round trip; the checks on what a user types."""
import json
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from app import figures, render, story
from app import request as runner
from app import run_file as record
from app import run_schema
from model.core.a3 import A3Model
from model.corpus.austen import train_tokenizer
from model.core.decode import run
from model.core.infill import Blank, encode_segments, parse_template

TEXT = "Anne had not expected a letter. She [[3]] it twice, and then [[4]] by the fire."


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([TEXT.replace("[[3]]", "read").replace("[[4]]", "sat down")] * 4 +
                           ["<b>bold</b> & the cat sat on the mat."], vocab_size=300)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      initializer_range=0.3, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    return A3Model(LlamaForCausalLM(cfg)).eval()


def make_rec(model, tok, template=TEXT, **kw):
    request = runner.RunRequest(template=template, **kw)
    enc = encode_segments(tok, parse_template(template), tok.bos_token_id, 128)
    cfg = request.decode_config(enc.blank_spans)
    trace = run(model, enc.input_ids, enc.blank_mask, cfg, tok, enc.blank_spans)
    return record.make_record({"label": "tiny", "path": "-", "trained": False}, request.settings, enc, trace, -1.5,
                              0.01)


def test_frames_show_pending_new_and_earlier_tokens(model, tok):
    rec = make_rec(model, tok, group_size=2)
    n = len(rec["steps"])
    assert n == math.ceil(7 / 2), "left-to-right, group size 2 over 3 + 4 blank tokens"
    f0 = render.frame_spans(rec, 0)
    assert [lab for _, lab in f0].count(render.PENDING) == 7
    visible = [t for t, lab in f0 if lab is None]
    assert visible == ["Anne had not expected a letter. She", " it twice, and then", " by the fire."]
    f2 = render.frame_spans(rec, 2)
    labels = [lab for _, lab in f2 if lab is not None]
    assert sum(lab.startswith(render.NEW) for lab in labels) == 2, "the two tokens of step 2 are 'new'"
    assert labels.count(render.PENDING) == 3
    assert all(lab in render.COLOR_MAP for lab in labels), "every label has a colour (no palette fallback)"
    final = render.frame_spans(rec)
    assert render.PENDING not in [lab for _, lab in final]
    assert [t for t, lab in final if lab is None] == visible, "visible text never changes"
    assert render.filled_text(rec) == "".join(t for t, _ in final)
    assert len(record.trace_of(rec).fill_ids()) == 2, "one fill per blank"


def test_pending_blank_keeps_its_space_and_length(model, tok):
    rec = make_rec(model, tok)
    f0 = render.frame_spans(rec, 0)
    pend = [t for t, lab in f0 if lab == render.PENDING]
    assert pend[0] == " " + render.PENDING_CHAR and pend[1] == render.PENDING_CHAR


def test_caption_and_stats(model, tok):
    rec = make_rec(model, tok, strategy="right_to_left")
    n = len(rec["steps"])
    assert render.caption(rec, 0).startswith(f"Step 0 of {n}")
    cap = render.caption(rec)
    assert cap.startswith(f"Step {n} of {n}") and "0 pending" in cap and f"{n} forward passes" in cap
    rows = dict(render.stats_rows(rec))
    assert rows["steps"] == str(n) and rows["forward passes"] == str(n)
    assert "(exact)" in rows["log p, this run's order"], "singleton steps give the exact likelihood"
    grouped = dict(render.stats_rows(make_rec(model, tok, group_size=3)))
    assert "group-factorized" in grouped["log p, this run's order"]
    assert rec["stats"]["tokens"] == 7 and rec["stats"]["tokens_per_s"] > 0
    assert math.isclose(rec["stats"]["log_likelihood"], sum(math.log(p) for s in rec["steps"] for p in s["probs"]))


def test_order_figure_marks_every_token_and_greys_the_future(model, tok):
    rec = make_rec(model, tok, strategy="outside_in")
    fig = figures.order_figure(rec)
    pts = [(x, y) for tr in fig.data for x, y in zip(tr.x, tr.y)]
    assert len(pts) == 7
    assert sorted(y for _, y in pts) == sorted(s["index"] + 1 for s in rec["steps"] for _ in s["positions"])
    half = figures.order_figure(rec, 3)
    assert [len(tr.x) for tr in half.data] == [4, 3], "future steps greyed, past ones coloured"


def test_token_figure_hover_is_escaped(model, tok):
    rec = make_rec(model, tok)
    rec["steps"][0]["tokens"][0] = "<img src=x onerror=alert(1)>"
    rec["steps"][0]["alternatives"][0][0][0] = "<b>"
    fig = figures.token_figure(rec)
    blob = json.dumps(fig.to_plotly_json()["data"], ensure_ascii=False)
    assert "<img" not in blob and "&lt;img" in blob and "&lt;b&gt;" in blob
    assert len(fig.data[0].y) == 7 and len(fig.data[1].y) == 7
    assert all(0 < p <= 1 for p in fig.data[0].y)


def test_record_json_round_trip_and_refusals(model, tok):
    rec = make_rec(model, tok, strategy="confidence", group_size=2)
    back = run_schema.from_json(record.to_json(rec).encode())
    assert back["steps"] == json.loads(record.to_json(rec))["steps"]
    assert render.frame_spans(back) == render.frame_spans(rec)
    bad = json.loads(record.to_json(rec))
    bad["steps"][0]["positions"] = [0] * len(bad["steps"][0]["positions"])
    for text, says in ((b"not json", "not JSON"), (b"{}", "format"), (json.dumps(bad).encode(), "open blank")):
        with pytest.raises(ValueError, match=says):
            run_schema.from_json(text)


def test_editor_round_trip(tok):
    st = story.new_state("The cat sat on the mat.")
    v = story.view("The cat sat on the mat.", st, tok, 128)
    assert v.editor == [("The cat sat on the mat.", None)]
    assert story.from_editor(v.editor, v.state, tok) is None, "our own render is not a change"
    # the browser splits the selected text off and labels it
    segs, _ = story.from_editor([("The cat ", None), ("sat", "label"), (" on the mat.", None)], st, tok)
    assert segs[1] == Blank(len(tok.encode(" sat")), "sat") and segs[1].original == "sat"
    v = story.view(*_template_state(segs), tok, 128)
    assert v.template.startswith("The cat [[") and v.editor[1][1] == render.EDITOR_BLANK
    # a number typed as a blank's label resizes it; removing the label restores the text
    n = v.editor[1][0]
    segs, _ = story.from_editor([v.editor[0], (n, "6"), v.editor[2]], v.state, tok)
    assert segs[1].length == 6
    segs, _ = story.from_editor([(v.editor[0][0] + n + v.editor[2][0], None)], v.state, tok)
    assert segs == ["The cat sat on the mat."]
    # a chosen length for new blanks
    segs, _ = story.from_editor([("The cat ", None), ("sat", "label"), (" on", None)], st, tok, new_length=9)
    assert segs[1].length == 9


def _template_state(segs):
    st = story.state_of(segs)
    return st["template"], st


def test_story_view_never_raises(tok):
    for bad in ("a [[x]] b", "", "[[3]]", "a [[900]] b", "\x00\x1b[[2]] ok"):
        v = story.view(bad, story.new_state(), tok, 128)
        assert isinstance(v.info, str)
    broken = story.view("a [[2]] b [[x]] c", story.new_state(), tok, 128)
    assert "⚠️" in broken.info and broken.editor is None, "a broken template leaves the editor alone"
    assert story.from_editor([("a [[x]] b", None)], story.new_state(), tok) is None, "[[x]] is just text there"
    assert "Removed 2 control characters" in story.view("\x00\x1ba [[2]] b", story.new_state(), tok, 128).info


def test_settings_checks():
    ok = runner.RunRequest.check("a [[2]]", "confidence", 2, 0.5, "", 0.7, 40, 0.9, " 17 ")
    assert (ok.seed, ok.threshold, ok.group_size) == (17, 0.5, 2), f"the checked values, typed: {ok}"
    assert runner.RunRequest.check("a [[2]]", "left_to_right", 1, 0.5, "", 0, 0, 1, "").threshold is None, \
        "a fixed order has no threshold"
    for args, says in ((("x", "sideways", 1, 0, "", 0, 0, 1, "0"), "unknown strategy"),
                       (("x", "random", 1.5, 0, "", 0, 0, 1, "0"), "whole number"),
                       (("x", "random", 1, 0, "", float("nan"), 0, 1, "0"), "temperature"),
                       (("x", "random", 1, 0, "", 1e9, 0, 1, "0"), "temperature"),
                       (("x", "random", 1, 0, "", 0, -1, 1, "0"), "top-k"),
                       (("x", "random", 1, 0, "", 0, 0, 1, "abc"), "seed"),
                       (("x", "random", 1, 0, "", 0, 0, 1, "-4"), "seed"),
                       (("x", "random", 1, 0, "", 0, 0, 1, "9" * 30), "seed")):
        with pytest.raises(ValueError, match=says):
            runner.RunRequest.check(*args)


def test_a_request_is_recorded_as_is_and_rebuilt_by_the_same_check(model, tok):
    """The run file's settings are the RunRequest itself; reading the file back rebuilds the very
    same request through RunRequest.check (and a file's missing fields take the defaults)."""
    req = runner.RunRequest.check(TEXT, "confidence", 2, 0.5, "", 0.7, 40, 0.9, " 17 ", 3, "samples")
    rec = make_rec(model, tok, **{k: v for k, v in req.settings.items() if k != "template"})
    assert rec["settings"] == req.settings, f"the record holds the request as it is: {rec['settings']}"
    back = run_schema.from_json(record.to_json(rec).encode())
    assert runner.RunRequest(**back["settings"]) == req, f"a reload rebuilds the same request: {back['settings']}"
    assert runner.RunRequest.from_settings({"template": TEXT}) == runner.RunRequest(template=TEXT), \
        "a file's missing settings take the request's defaults"


def test_md_escape_makes_markup_inert():
    s = render.md_escape("<script>x</script> **b** [l](http://e)")
    assert "<" not in s and "**" not in s and "](" not in s


def test_compute_is_wrapped_by_spaces_gpu_when_present(monkeypatch):
    """On ZeroGPU `spaces.GPU(duration=...)` wraps the one batch compute call; elsewhere it runs as is."""
    import importlib
    import sys
    from app import compute
    import types

    calls = []
    fake = types.ModuleType("spaces")

    def GPU(duration=None):
        calls.append(duration)
        return lambda fn: ("wrapped", fn)

    fake.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", fake)
    try:
        wrapped = importlib.reload(compute)
        assert wrapped.compute_rows[0] == "wrapped" and wrapped.compute_rows[1] is wrapped._compute_rows, \
            "the batch compute call must be the function spaces.GPU wraps"
        rows = [([0, 5, 6], [False, True, True], None)]
        assert callable(calls[0]) and 15 <= calls[0]("k", rows, [None], ["run"]) <= 120, \
            "the GPU duration must be computed from the request (15 to 120 s)"
    finally:
        monkeypatch.delitem(sys.modules, "spaces")
        importlib.reload(compute)
    assert compute.compute_rows is compute._compute_rows, "without spaces the compute call runs as it is"


def test_very_long_text_is_refused_early():
    with pytest.raises(ValueError, match="characters"):
        runner.RunRequest.check("x" * (runner.MAX_CHARS + 1), "random", 1, 0, "", 0, 0, 1, "0")
