"""A blank whose length the model ends with its learned length signal, through the app: a tiny
random checkpoint whose config names an empty token (a3.length_signal), rigged to favour ending
(its logit raised, as tests/test_chosen_length.py does), launched with the app and driven through
/run, /fill and /load_run; and the plan, the record and the run file without a server."""
import json
import re
from dataclasses import replace

import pytest
import torch
from gradio_client import Client, handle_file

from test_app_e2e import free_port, tiny_menu

EMPTY = 1  # the test tokenizer's <eos>: the checkpoint's empty token
SLOTS = 16  # the checkpoint's max_slots: a [[?]] blank (up to 40 tokens) gets 16 slots
BIAS = 5.0  # added to the empty token's logit: fills end within a few tokens, not at once
STORY = "Anne had not expected a letter. She [[?]] by the fire."
OUT = ["result", "caption", "replay", "status", "stats", "filled", "order", "tokens", "download", "cands", "cand_pick"]


@pytest.fixture(scope="module")
def signal_app(tmp_path_factory):
    """(client, model key, model, tokenizer) of the app serving a tiny checkpoint with a length signal."""
    ckpt, mp = tiny_menu(tmp_path_factory)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["a3"]["length_signal"] = {"empty_id": EMPTY, "empty_token": "<eos>", "max_slots": SLOTS}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    from app import model_menu
    from app.ui import build_demo

    demo = build_demo()
    key = model_menu.available_models()[0].key
    model, tok = model_menu.load(key)
    assert model_menu.length_signal(key)["empty_id"] == EMPTY, "the menu model reads its signal from config.json"
    hook = model.base.lm_head.register_forward_hook(  # favour the empty token wherever it is allowed
        lambda m, i, out: out.index_add(-1, torch.tensor([EMPTY]), torch.full_like(out[..., :1], BIAS)))
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    client = Client(demo.local_url, verbose=False)
    try:
        yield client, key, model, tok
    finally:
        hook.remove()
        client.close()
        demo.close()
        mp.undo()


def frames_of(signal_app, template=STORY, strategy="left_to_right", candidates=1, speed=0.01):
    client, key, _, _ = signal_app
    job = client.submit(template, key, strategy, 1, 0, "", 0, 0, 1, "0", speed, candidates, "orders", api_name="/run")
    return [dict(zip(OUT, f)) for f in job]


def pending(frame) -> int:
    return sum(s["class_or_confidence"] == "blank" for s in frame["result"])


def new(frame) -> int:
    return sum(str(s["class_or_confidence"]).startswith("new") for s in frame["result"])


def filled_tokens(frame) -> list[str]:
    return [s["token"] for s in frame["result"] if s["class_or_confidence"] not in (None, "blank")]


def test_the_fill_ends_itself_and_its_slots_close_on_screen(signal_app):
    """Left to right, one candidate: frame 0 shows the 16 slots, one frame drops more slots than it
    fills (the end and the slots it closed), the last frame is the story as filled, and the page
    says the length and how sure the model was."""
    frames = frames_of(signal_app)
    assert pending(frames[0]) == SLOTS, f"frame 0 shows every slot pending: {pending(frames[0])}"
    drops = [i for i in range(1, len(frames)) if pending(frames[i - 1]) - pending(frames[i]) > new(frames[i])]
    assert len(drops) == 1, f"one frame closes the unused slots: pending per frame {[pending(f) for f in frames]}"
    last = frames[-1]
    L = len(filled_tokens(last))
    assert 1 <= L < SLOTS and pending(last) == 0, f"the fill ends before its slots run out: {L} of {SLOTS}"
    assert pending(frames[drops[0] - 1]) == SLOTS - (drops[0] - 1), "slots stay pending until the end is written"
    assert "<eos>" not in last["filled"] and "<eos>" not in "".join(filled_tokens(last)), "no empty token shown"
    status = last["status"].replace("\\", "")
    m = re.search(r"The model ended the fill after (\d+) tokens? \(p = (0\.\d\d|1\.00) that it ends there; "
                  r"p = (0\.\d\d|1\.00) that the fill is exactly", status)
    assert m and int(m.group(1)) == L, f"the status says the length and how sure the model is: {status!r}"
    row = dict(last["stats"]["data"])["length the model chose"]
    assert row.startswith(f"{L} of {SLOTS} slots · p(end there) ") and "p(this length)" in row, f"stats row: {row!r}"
    rows = last["cands"]["data"]
    assert len(rows) == 1 and rows[0][2] == L, f"the candidate's own length is in the table: {rows}"
    assert "the model ended the fill" in frames[drops[0]]["caption"], f"caption: {frames[drops[0]]['caption']!r}"


def test_fill_reports_the_chosen_length_and_each_candidate_its_own(signal_app):
    client, key, _, _ = signal_app
    r = client.predict(text=STORY, model=key, candidates=4, api_name="/fill")
    ch = r["chosen_length"]
    assert ch and ch["slots"] == SLOTS and 1 <= ch["length"] < SLOTS, f"the chosen length: {ch}"
    assert len(r["blanks"][0]["tokens"]) == ch["length"], f"the blank holds the chosen length: {r['blanks']}"
    assert 0 < ch["p_end"] <= 1 and ch["text"].startswith(f"The model ended the fill after {ch['length']} token"), ch
    assert "<eos>" not in r["text"] and all("<eos>" not in t for t in r["blanks"][0]["tokens"]), r["text"]
    assert r["ranking"]["rule"] == "fluent_mbr" and r["ranking"]["slots"] == SLOTS and r["ranking"]["lengths"] == [], \
        f"one request of {SLOTS} slots, ranked by the shipped rule: {r['ranking']}"
    assert len(r["candidates"]) == 4, f"four candidates: {r['candidates']}"
    for c in r["candidates"]:
        m = re.search(r", (\d+) tokens \(the model's end\)$", c["made_by"])
        assert m and int(m.group(1)) == c["tokens"] <= SLOTS, f"each candidate is labelled with its own length: {c}"
    one = client.predict(text=STORY, model=key, api_name="/fill")["chosen_length"]
    assert one["p_length"] is not None and 0 < one["p_length"] <= one["p_end"], \
        f"left to right, the probability of the exact length is given (and is at most p_end): {one}"


def test_a_range_keeps_its_least_length_within_the_model_s_slots(signal_app):
    client, key, _, _ = signal_app
    r = client.predict(text="She [[4-30]] by the fire.", model=key, api_name="/fill")
    ch = r["chosen_length"]
    assert ch["slots"] == SLOTS and 4 <= ch["length"] <= SLOTS, f"at least 4 tokens, at most the {SLOTS} slots: {ch}"
    assert f"the blank had {SLOTS} slots instead of up to 30" in r["ranking"]["note"], r["ranking"]


def test_a_fixed_length_blank_never_changes(signal_app):
    """With the empty token favoured, a blank of given length still gets exactly its tokens, none
    of them empty, beside a chosen-length blank and alone (a plain run: no plan, no chosen length)."""
    client, key, _, _ = signal_app
    r = client.predict(text="She [[?]] it twice, and then [[3]] by the fire.", model=key, api_name="/fill")
    assert len(r["blanks"][1]["tokens"]) == 3 and "<eos>" not in "".join(r["blanks"][1]["tokens"]), r["blanks"]
    plain = client.predict(text="She [[3]] it twice, and then [[4]] by the fire.", model=key, api_name="/fill")
    assert [len(b["tokens"]) for b in plain["blanks"]] == [3, 4], f"fixed lengths kept: {plain['blanks']}"
    assert plain["chosen_length"] is None and plain["ranking"] is None, "a plain run chooses no length"
    assert "<eos>" not in plain["text"], plain["text"]


def test_a_saved_run_reloads_and_replays_its_closing_slots(signal_app):
    client, _, _, _ = signal_app
    frames = frames_of(signal_app, speed=0)
    last = frames[-1]
    path = last["download"]["value"] if isinstance(last["download"], dict) else last["download"]
    rec = json.loads(open(path, encoding="utf-8").read())
    assert rec["chosen"]["slots"] == SLOTS and rec["chosen"]["empty_id"] == EMPTY, f"the file keeps it: {rec['chosen']}"
    replay = [dict(zip(OUT, f)) for f in client.submit(handle_file(path), 0.01, api_name="/load_run")]
    assert pending(replay[0]) == SLOTS, "the replay starts from the 16 slots"
    assert replay[-1]["result"] == last["result"], "the replay ends on the story as filled"
    assert any(pending(a) - pending(b) > new(b) for a, b in zip(replay, replay[1:])), "the slots close in the replay"
    status = replay[-1]["status"].replace("\\", "")
    assert "The model ended the fill after" in status, f"the replay says the chosen length: {status!r}"


# ----------------------------------------------------------------------------------------------
# without a server: the plan, the record, the run file


@pytest.fixture(scope="module")
def prepared(signal_app):
    from app.request import RunRequest, prepare
    _, key, _, _ = signal_app
    return lambda story, n=1, strategy="left_to_right": prepare(
        RunRequest.check(story, strategy, 1, 0, "", 0, 0, 1, "0", n), key)


def test_the_plan_uses_the_signal_and_falls_back_to_the_grid(prepared):
    from app.candidate_plan import LENGTH_RULE, RULE, plan_candidates
    run = prepared("She [[2-30]] it, and [[3]] by the fire.", 3)
    plan = plan_candidates(run)
    first = plan.requests[0].enc.blank_spans[0][0]
    assert len(plan.requests) == 1 and len(plan.requests[0].enc.blank_spans[0]) == SLOTS, "one request, M slots"
    assert [c.slack for _, c in plan.configs] == [(first, SLOTS, 2)] * 3, f"slack configs: {plan.configs}"
    assert plan.rule == RULE and plan.weights is None and plan.slack["empty_id"] == EMPTY, "the shipped rule ranks"
    grid = plan_candidates(replace(run, signal={}))
    assert len(grid.requests) > 1 and grid.rule == LENGTH_RULE and grid.slack is None, \
        "a model without the signal tries the grid of lengths"
    assert all(c.slack is None for _, c in grid.configs), "no slack without a signal"
    above = plan_candidates(prepared("She [[20-40]] it.", 1))
    assert above.slack is None and len(above.requests) > 1 and "starts above" in above.note, \
        f"a range that starts above the model's slots tries the grid, and says so: {above.note!r}"
    fixed = plan_candidates(prepared("She [[3]] it.", 2))
    assert fixed.slack is None and all(c.slack is None for _, c in fixed.configs), "a given length is never slack"


def test_the_record_checks_and_recomputes_what_it_says_of_the_length(prepared):
    from app import render, run_file, run_schema
    from app.candidate_plan import plan_candidates
    from app.compute import execute_candidates
    run = prepared(STORY)
    rec = execute_candidates(run, plan_candidates(run))
    L, n = rec["chosen"]["length"], len(rec["steps"])
    gone = [k for k in range(1, n + 1) if run_file.ended_slots(rec, k) != run_file.ended_slots(rec, k - 1)]
    assert len(gone) == 1, "one step ends the fill"
    at = lambda k: render.frame_spans(rec, k).count((render.PENDING_CHAR, render.PENDING))  # noqa: E731
    assert at(gone[0]) < at(gone[0] - 1) - 1, "the closing step's frame shows fewer pending slots"
    assert sum(lab not in (None, render.PENDING) for _, lab in render.frame_spans(rec)) == L, "final frame: L tokens"
    back = run_schema.from_json(run_file.to_json(rec).encode())
    assert back["chosen"] == rec["chosen"] and render.frame_spans(back) == render.frame_spans(rec), "round trip"
    text = json.loads(run_file.to_json(rec))
    text["chosen"].update(length=1, p_end=0.999)
    assert run_schema.check_record(text)["chosen"] == rec["chosen"], "length and p_end are recomputed, not trusted"
    for change, says in ((lambda r: r["chosen"].update(blank=3), "chosen.blank"),
                         (lambda r: r["steps"].pop(), "neither filled nor closed"),
                         (lambda r: r.pop("chosen"), "names no blank whose length the model chose")):
        bad = json.loads(run_file.to_json(rec))
        change(bad)
        with pytest.raises(ValueError, match=says):
            run_schema.check_record(bad)
