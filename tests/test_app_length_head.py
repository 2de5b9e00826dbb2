"""A [[?]] blank on a checkpoint with a length head (core/length_head.py), through the app's own
calls (prepare, plan_candidates, execute_candidates, the ranking note): the head's log prior is
added to the shipped grid rule, exactly, and the record says what the head believed."""
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


def test_the_head_adds_its_log_prior_to_the_grid_rule_and_says_so(headed):
    from app import render
    from app.candidate_plan import plan_candidates
    from app.compute import execute_candidates
    from model.core.candidates import SHIPPED_HEAD_WEIGHT

    prepare, model = headed
    run = prepare(STORY)
    plan = plan_candidates(run)
    assert plan.chosen == 0 and PEAK in plan.lengths, f"a grid plan for blank 0 with {PEAK} among {plan.lengths}"
    rec = execute_candidates(run, plan)
    h = rec["ranking"]["length_head"]
    assert h["median"] == PEAK and h["low"] <= PEAK <= h["high"], f"the head's belief {h}"
    head = model.length_head
    object.__setattr__(model, "length_head", None)  # the same runs without the head: the oracle
    try:
        plain = execute_candidates(run, plan_candidates(run))
    finally:
        object.__setattr__(model, "length_head", head)
    assert "length_head" not in plain["ranking"], "a model without a head says nothing of one"
    without = {(c["label"], c["length"]): c["value"] for c in plain["candidates"]}
    from app.compute import length_belief
    from model.core.length_head import length_features
    enc = plan.requests[0].enc
    spans = enc.blank_spans
    feats = length_features(model, [(enc.input_ids, spans[0], [p for s in spans[1:] for p in s])])
    log_p = length_belief(head, feats, plan.lengths)["log_p"]
    for c in rec["candidates"]:
        want = without[c["label"], c["length"]] + SHIPPED_HEAD_WEIGHT * log_p[c["length"]]
        assert abs(c["value"] - want) < 1e-3, f"{c['label']} at {c['length']}: value {c['value']}, want {want}"
    p = math.exp(log_p[rec["candidates"][0]["length"]]) / sum(math.exp(v) for v in log_p.values())
    assert abs(h["p_chosen"] - p) < 1e-9, f"p_chosen {h['p_chosen']} is not p(L) over the grid ({p})"
    note = render.ranking_note(rec)
    assert f"expects about {PEAK} tokens" in note and "of its belief" in note, f"the note: {note!r}"


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
