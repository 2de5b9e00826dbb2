"""A [[?]] blank on a checkpoint with a length head (core/length_head.py), through the app's own
calls (prepare, plan_candidates, execute_candidates, the ranking note): the head chooses the
length among the grid's (the core's choose_length, called directly, is the oracle), only that
length is decoded, and the record says what the head believed."""
import json
import math

import pytest
import torch

from test_app_e2e import tiny_menu

STORY = "Anne had not expected a letter. She [[?]] by the fire, and [[2]] the rest."
PEAK = 3  # the rigged head's median length, one of length_grid(1, 40, 8)


@pytest.fixture(scope="module")
def headed(tmp_path_factory):
    """(prepare, model) for a tiny menu checkpoint whose length head is sure of PEAK tokens."""
    from model.core.length_head import LengthHead

    ckpt, mp = tiny_menu(tmp_path_factory)
    from app import model_menu
    from app.request import RunRequest, prepare

    key = model_menu.available_models()[0].key
    probe, _ = model_menu.load(key)
    head = LengthHead(3 * probe.config.hidden_size)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([math.log(PEAK), -20.0]))  # sigma at its floor, 0.05
    head.save(ckpt)
    model_menu._LOADED.clear()  # load it again, with its head
    model, _ = model_menu.load(key)
    try:
        yield (lambda story, n=2: prepare(RunRequest.check(story, "left_to_right", 1, 0, "", 0, 0, 1, "0", n), key)), model
    finally:
        model_menu._LOADED.clear()
        mp.undo()


def test_the_head_chooses_the_length_and_only_that_length_is_decoded(headed):
    from app import render
    from app.candidate_plan import plan_candidates
    from app.compute import execute_candidates
    from model.core.length_head import choose_length, length_features

    prepare, model = headed
    run = prepare(STORY, n=3)
    plan = plan_candidates(run)
    assert plan.chosen == 0 and PEAK in plan.lengths, f"a grid plan for blank 0 with {PEAK} among {plan.lengths}"
    rec = execute_candidates(run, plan)
    assert {c["length"] for c in rec["candidates"]} == {PEAK}, \
        f"only the head's length is decoded: {sorted({c['length'] for c in rec['candidates']})}"
    assert len(rec["candidates"]) == len(plan.configs), "every member of the pool at that length"
    enc = plan.requests[0].enc
    spans = enc.blank_spans
    feats = length_features(model, [(enc.input_ids, spans[0], [p for s in spans[1:] for p in s])])
    want = choose_length(model.length_head, feats, plan.lengths)  # the oracle: the core's rule, called directly
    h = rec["ranking"]["length_head"]
    assert (h["median"], h["low"], h["high"]) == (want["median"], want["low"], want["high"]) and h["median"] == PEAK, \
        f"the record's belief {h} is not the head's {want}"
    assert abs(h["p_chosen"] - want["p"][PEAK]) < 1e-9 and h["weighed"] == plan.lengths, f"p(chosen) over the grid: {h}"
    head = model.length_head
    object.__setattr__(model, "length_head", None)  # the same story without the head: the grid's lengths
    try:
        plain = execute_candidates(run, plan_candidates(run))
    finally:
        object.__setattr__(model, "length_head", head)
    assert "length_head" not in plain["ranking"] and len({c["length"] for c in plain["candidates"]}) > 1, \
        "a model without a head tries the grid, and says nothing of a head"
    note = render.ranking_note(rec)
    assert f"Length {PEAK} tokens, chosen by the model's length head" in note and f"about {PEAK} tokens" in note, \
        f"the note says the length and how sure the head is: {note!r}"
    from app import run_file, run_schema
    back = run_schema.from_json(run_file.to_json(rec).encode())
    assert back["ranking"]["length_head"] == h and render.ranking_note(back) == note, \
        "a saved run reads back with what the head believed, and says it again"
    bad = json.loads(run_file.to_json(rec))
    bad["ranking"]["length_head"]["p_chosen"] = 1.5
    with pytest.raises(ValueError, match="ranking.length_head.p_chosen"):
        run_schema.check_record(bad)


def test_a_given_length_never_reads_the_head(headed):
    from app.candidate_plan import plan_candidates
    from app.compute import execute_candidates

    prepare, _ = headed
    run = prepare("Anne had not expected a letter. She [[4]] by the fire.", 3)
    plan = plan_candidates(run)
    assert plan.chosen is None and not plan.lengths, "a blank of given length is not a grid plan"
    rec = execute_candidates(run, plan)
    assert "length_head" not in rec["ranking"], "a fixed-length ranking must not use the length head"
    assert all(c["length"] == 4 for c in rec["candidates"]), "every candidate keeps the given length"
