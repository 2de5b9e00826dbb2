"""The app's API as a script sees it, through gradio_client against the app launched with a tiny
random checkpoint (test_app_e2e's `app` fixture): every parameter has a name and a default, the
plain /fill endpoint answers JSON, the README's snippet (docs/api-snippet.py) runs as written, and
a blank whose length the model chooses survives the story helpers."""
import contextlib
import io
import re
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

from test_app_e2e import STORY, app  # noqa: F401 (the app fixture)

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = ROOT / "docs" / "api-snippet.py"
SNIPPET_URL = "http://127.0.0.1:7860/"  # where the snippet expects the app; the test's app is elsewhere
RUN_NAMES = ["text", "model", "order", "group_size", "threshold", "custom_order", "temperature", "top_k", "top_p",
             "seed", "speed", "candidates", "pool"]


@pytest.fixture(scope="module")
def api(app):  # noqa: F811 (the fixture of the same name)
    """{endpoint: [parameter info]} of the running app, as view_api reports it."""
    client, _ = app
    info = client.view_api(print_info=False, return_format="dict")
    return {name: ep["parameters"] for name, ep in info["named_endpoints"].items()}


def test_every_parameter_has_a_name(api):
    unnamed = {ep: [p["parameter_name"] for p in params if re.fullmatch(r"param_\d+", p["parameter_name"])]
               for ep, params in api.items()}
    assert not any(unnamed.values()), f"view_api should show no param_N names: {unnamed}"
    assert [p["parameter_name"] for p in api["/run"]] == RUN_NAMES, f"/run's names: {api['/run']}"
    fill = [name for name in RUN_NAMES if name != "speed"]
    assert [p["parameter_name"] for p in api["/fill"]] == fill, f"/fill's names: {api['/fill']}"
    sides = [f"{n}_{s}" for s in "ab" for n in ("order", "group_size", "threshold", "custom_order")]
    assert [p["parameter_name"] for p in api["/compare"]][-8:] == sides, f"/compare's names: {api['/compare']}"


def test_run_fill_and_compare_need_nothing_but_the_text(api):
    for ep in ("/run", "/fill", "/compare"):
        missing = [p["parameter_name"] for p in api[ep] if not p["parameter_has_default"]]
        assert not missing, f"{ep}: every parameter should have a default, so text= alone works: {missing}"


def test_the_readme_snippet_runs_as_written(app):
    """docs/api-snippet.py (docs/api.md's "Use it from Python"), with only its URL pointed at this app."""
    client, _ = app
    code = SNIPPET.read_text(encoding="utf-8")
    assert code.count(SNIPPET_URL) == 1, f"the snippet should connect to {SNIPPET_URL} once"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace(SNIPPET_URL, client.src), str(SNIPPET), "exec"), {"__name__": "__main__"})
    lines = [line for line in out.getvalue().splitlines() if not line.startswith("Loaded as API")]  # the client's
    assert lines[0].startswith("The cat") and lines[0].endswith(" on the mat."), f"the filled text first: {lines[:2]}"
    assert re.fullmatch(r"'.*' \[(0\.\d+|1\.0)(, (0\.\d+|1\.0)){3}\]", lines[1]), \
        f"the blank's fill and its 4 probabilities: {lines[1]!r}"
    assert lines[2].startswith("left-to-right, group size 1 -"), f"the order, then log p: {lines[2]!r}"
    ranked = [line for line in lines if re.match(r"\d ", line)]
    assert [int(line.split()[0]) for line in ranked] == [1, 2, 3], f"the three best candidates: {ranked}"
    assert lines[-1].startswith("The cat") and lines[-1].endswith(" on the mat."), \
        f"/run's filled story last: {lines[-1]!r}"


def test_fill_answers_json(app):
    client, key = app
    r = client.predict(text=STORY, model=key, order="right_to_left", group_size=2, api_name="/fill")
    assert r["text"].startswith("Anne had not expected a letter. She"), f"the filled story: {r['text']!r}"
    assert [len(b["tokens"]) for b in r["blanks"]] == [3, 4], f"each blank's tokens: {r['blanks']}"
    for b in r["blanks"]:
        assert all(0 < p <= 1 for p in b["probs"]), f"per-token probabilities: {b['probs']}"
        assert b["fill"] and b["fill"] in r["text"], f"each fill is in the text: {b['fill']!r}"
    assert r["order"]["name"] == "right_to_left" and len(r["order"]["steps"]) == 4, \
        f"the order and its steps (7 tokens, 2 a step): {r['order']}"
    assert r["log_likelihood"] < 0 and r["left_to_right_log_likelihood"] < 0, "both log-likelihoods"
    assert r["candidates"] == [] and r["ranking"] is None, "one run, no candidates"
    ranked = client.predict(text=STORY, candidates=3, api_name="/fill")
    assert [c["rank"] for c in ranked["candidates"]] == [1, 2, 3], f"three ranked: {ranked['candidates']}"
    assert ranked["ranking"]["rule"] and ranked["order"]["label"] == ranked["candidates"][0]["made_by"], \
        "the answer is the winner, named by who made it"


@pytest.mark.parametrize("kw, says", [
    (dict(text="No blanks in this story."), "no blank"),
    (dict(text=STORY, order="zigzag"), "unknown strategy"),
    (dict(text=STORY, model="../../etc/passwd"), "unknown model"),
    (dict(text=STORY, temperature=9), "temperature must be between 0 and 2"),
])
def test_fill_refuses_with_a_message(app, kw, says):
    client, _ = app
    with pytest.raises(AppError, match=says):
        client.predict(**kw, api_name="/fill")


@pytest.mark.parametrize("attempt", range(3))
def test_a_chosen_length_blank_survives_blank_a_random_sentence(app, attempt):
    """A story holding a [[?]] blank through the "Blank a random sentence" helper: the [[?]] stays
    a blank whose length the model chooses (it once came back as a fixed [[N]])."""
    client, key = app
    text = "Anne walked home. She [[?]] by the fire. It rained all night. The fire went out at dawn."
    template, _, _, info = client.predict(text=text, fraction=0.15, model=key, custom_order="",
                                          api_name="/blank_sentence")
    assert "[[?]]" in template, f"the [[?]] blank should stay [[?]]: {template!r}"
    assert len(re.findall(r"\[\[[^\]]*\]\]", template)) == 2, f"one more blank, a sentence: {template!r}"
    restored, _, _, _ = client.predict(text=template, fraction=0.15, model=key, custom_order="", api_name="/restore")
    assert "[[?]]" in restored, f"restoring the new blank leaves the [[?]] one: {restored!r}"
