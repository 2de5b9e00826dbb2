"""Candidates in the app, end to end through gradio_client: N candidates ranked with the winner
animated, a [[?]] blank whose length the model chooses (the chosen length and the runners-up
shown), showing another candidate, putting one into the story, and clear messages for bad input
(ranges, N, pools, [[?]] with a custom order)."""
import re

import pytest

from test_app_e2e import STORY, app, run, submit  # noqa: F401 (the app fixture)

EDITOR_OUT = ["template", "editor", "blanks", "info"]


def final(app, **kw):
    return run(app, **kw)[-1]


def test_candidates_are_ranked_and_the_winner_is_animated(app):
    last = final(app, candidates=4, pool="orders")
    rows = last["cands"]["data"] if isinstance(last["cands"], dict) else last["cands"]
    assert len(rows) == 4, f"four candidates should be listed: {rows}"
    assert [r[0] for r in rows] == [1, 2, 3, 4], "the table is ranked 1..N"
    assert rows[0][3].startswith("your settings") or any(r[3].startswith("your settings") for r in rows), \
        "the user's own settings are one of the candidates"
    scores = [r[4] for r in rows]
    assert scores == sorted(scores, reverse=True), f"the table is ordered by the rule's score: {scores}"
    assert "Best of 4 candidates" in last["status"], f"the status names the ranking: {last['status']}"
    filled = last["filled"]
    assert rows[0][1].split(" / ")[0].strip() in filled, "the winner's fill is the animated one"
    assert all(r[5] in (None, "") for r in rows), f"on a CPU, a known-length ranking skips the text after the blank: {rows}"
    assert isinstance(rows[0][6], float), f"the shown (winning) fill is scored given both sides: {rows[0]}"
    assert all(isinstance(r[6], float) or r[6] in (None, "") for r in rows[1:]), f"the others may be left out: {rows}"
    assert "not scored" in last["status"], f"the status says why that column is empty: {last['status']}"
    if any(r[6] in (None, "") for r in rows):
        assert "scored for a fill when it is shown" in last["status"], f"and why the other: {last['status']}"


def test_a_blank_whose_length_the_model_chooses(app):
    story = "Anne had not expected a letter. She [[?]] by the fire."
    last = final(app, template=story, candidates=1)
    rows = last["cands"]["data"] if isinstance(last["cands"], dict) else last["cands"]
    lengths = {r[2] for r in rows}
    assert len(lengths) >= 5, f"the [[?]] blank should be tried at several lengths: {sorted(lengths)}"
    m = re.search(r"Chosen length (\d+) tokens \(runners-up: ([\d, ]+)\)", last["status"])
    assert m, f"the status should give the chosen length and the runners-up: {last['status']}"
    assert int(m.group(1)) == rows[0][2], "the chosen length is the winner's"
    assert all(isinstance(r[5], float) for r in rows), f"the chosen-length rule reads the text after the blank: {rows}"


def test_show_another_candidate_and_put_one_into_the_story(app):
    client, key = app
    job = submit(app, candidates=3, pool="samples")
    job.result()
    frames = list(client.submit(2, 0, api_name="/show_candidate"))
    assert "showing #3" in frames[-1][3], f"the third candidate should be shown: {frames[-1][3]}"
    cands = frames[-1][9]["data"] if isinstance(frames[-1][9], dict) else frames[-1][9]
    assert isinstance(cands[2][6], float), f"a shown candidate is scored given both sides: {cands[2]}"
    out = client.predict(1, key, "", api_name="/use_candidate")
    template, info = out[0], out[3].replace("\\", "")
    assert "[[" not in template, f"the blanks should be replaced by candidate 2's text: {template!r}"
    assert "Candidate #2 is in the story" in info, f"the info line should say what happened: {info!r}"
    assert template.startswith("Anne had not expected a letter. She"), "the visible text stays"


@pytest.mark.parametrize("kw, message", [
    (dict(template="She [[9-3]] it."), "inverted"),
    (dict(template="She [[3-]] it."), "both ends"),
    (dict(template="She [[1-500]] it."), "between 1 and 64"),
    (dict(template="She [[?]] it and [[?]] it."), "only one blank"),
    (dict(template="She [[?]] it [[2]].", strategy="custom", custom="1 2"), "custom order cannot be used"),
    (dict(candidates=0), "number of candidates must be between 1 and 8"),
    (dict(candidates=99), "number of candidates must be between 1 and 8"),
    (dict(candidates="many"), "number of candidates must be a whole number"),
    (dict(candidates=4, pool="beams"), "unknown candidate pool"),
])
def test_bad_candidate_input_gets_a_message(app, kw, message):
    frames = run(app, **kw)
    status = frames[-1]["status"].replace("\\", "")
    assert message in status, f"{kw}: expected a message with {message!r}, got {status!r}"


def test_too_many_candidate_tokens_are_capped_and_said(app):
    """N = 8 at every length of a wide [[1-64]] range would exceed the request's budget: fewer run, and the
    status says so."""
    last = final(app, template="She [[1-64]] it, and [[40]] by the fire.", candidates=8)
    assert "Note:" in last["status"] and ("instead of 8" in last["status"] or "lengths" in last["status"]), \
        f"a capped request must say what was capped: {last['status']}"
