"""The app's compute engine (app/compute.py) under concurrent users: runs submitted together are
decoded in one batch, and each user gets exactly what the same run computed alone gives (the
oracle: the run by itself, on the same model, in fp32) — fills, per-step tokens and scores,
for stories of different lengths, greedy and sampled orders, and candidate rows mixed in."""
import threading

import pytest
import torch

from test_app_e2e import tiny_menu

STORIES = ["Anne had not expected a letter. She [[3]] it twice, and then [[4]] by the fire.",
           "It rained all day at [[5]], and nobody went out.",
           "The [[2]] was late, so the party [[6]] without it and came home before dark."]
SETTINGS = [("left_to_right", 1, 0.0, "0"), ("confidence", 2, 0.0, "0"), ("random", 1, 0.8, "7")]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """(compute module, model key, prepared requests) on a tiny checkpoint of this test."""
    _, mp = tiny_menu(tmp_path_factory)
    from app import compute, model_menu
    from app.request import RunRequest, prepare

    key = model_menu.available_models()[0].key
    requests = []
    for story in STORIES:
        for strategy, group, temperature, seed in SETTINGS:
            run = prepare(RunRequest.check(story, strategy, group, 0.5, "", temperature, 0, 1.0, seed), key)
            requests.append((run.enc, run.cfg))
    yield compute, key, requests
    mp.undo()


def job(compute, key, enc, cfg, kind="run", copies=1):
    row = (enc.input_ids, enc.blank_mask, enc.blank_spans)
    return compute.Job(key, [row] * copies, [cfg] * copies, [kind] * copies)


def same(a, b) -> bool:
    """Two (traces, scores) results agree: ids, every step's positions and tokens, probabilities and
    scores to 1e-5."""
    (ta, sa, _), (tb, sb, _) = a, b
    for x, y in zip(ta, tb):
        if not torch.equal(torch.as_tensor(x.output_ids), torch.as_tensor(y.output_ids)):
            return False
        if [(s.positions, s.token_ids) for s in x.steps] != [(s.positions, s.token_ids) for s in y.steps]:
            return False
        if any(abs(p - q) > 1e-5 for s, t in zip(x.steps, y.steps) for p, q in zip(s.probs, t.probs)):
            return False
    scores_a = [s if isinstance(s, float) else s.both for s in sa]
    scores_b = [s if isinstance(s, float) else s.both for s in sb]
    return len(ta) == len(tb) and all(abs(p - q) < 1e-5 for p, q in zip(scores_a, scores_b))


def test_concurrent_runs_are_batched_and_each_equals_its_run_alone(engine, monkeypatch):
    compute, key, requests = engine
    jobs = [job(compute, key, enc, cfg) for enc, cfg in requests]
    jobs.append(job(compute, key, *requests[0], kind="candidate", copies=2))  # a user's candidates join in
    alone = [compute.ENGINE.submit(j) for j in jobs]
    for j in jobs:  # the same jobs again, fresh
        j.result, j.error, j.done = None, None, False

    sizes, original = [], compute.compute_rows

    def spy(key, rows, cfgs, kinds):
        sizes.append(len(rows))
        return original(key, rows, cfgs, kinds)

    monkeypatch.setattr(compute, "compute_rows", spy)
    monkeypatch.setattr(compute, "WINDOW_S", 0.3)  # a slow CI machine: everyone arrives within the window
    together, start = [None] * len(jobs), threading.Barrier(len(jobs))

    def user(i):
        start.wait()
        together[i] = compute.ENGINE.submit(jobs[i])

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(r is not None for r in together), "every concurrent user gets an answer"
    assert sum(sizes) == sum(len(j.rows) for j in jobs), f"every row is decoded once: batches {sizes}"
    assert max(sizes) > 1, f"runs submitted together should share a batch: batches {sizes}"
    for i, (a, b) in enumerate(zip(alone, together)):
        assert same(a, b), f"job {i} computed in a batch differs from the same job alone"


def test_a_failing_batch_answers_every_waiting_user(engine, monkeypatch):
    compute, key, requests = engine

    def broken(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(compute, "compute_rows", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        compute.ENGINE.submit(job(compute, key, *requests[0]))
    monkeypatch.undo()
    monkeypatch.setattr(compute, "WINDOW_S", 0.0)
    traces, scores, _ = compute.ENGINE.submit(job(compute, key, *requests[1]))
    assert len(traces) == 1 and isinstance(scores[0], float), "the engine goes on after a failed batch"


def test_a_cpu_ranking_scores_both_sides_of_the_shown_fill_alone(engine, monkeypatch):
    """Kind "ranked" on a CPU: fill_left for every row, both sides only where the run scored itself
    (the left-to-right row; the oracle: blanks_logp of the filled row); kind "score" (a filled row,
    no config) gives any other row's both-sides score without decoding it."""
    from app import model_menu
    from model.core.scoring import blanks_logp

    compute, key, requests = engine
    monkeypatch.setattr(compute, "WINDOW_S", 0.0)
    (enc, l2r), (_, conf) = requests[0], requests[1]  # the same story, left to right and by confidence
    row = (enc.input_ids, enc.blank_mask, enc.blank_spans)
    traces, scores, _ = compute.ENGINE.submit(compute.Job(key, [row, row], [l2r, conf], ["ranked"] * 2))
    model, _ = model_menu.load(key)
    oracle = blanks_logp(model, [(t.output_ids, t.blank_mask) for t in traces])
    assert scores[0].both == pytest.approx(oracle[0], abs=1e-4), "the left-to-right run's own log p is its both"
    assert scores[1].both is None and scores[1].right is None, "no both-sides or right walk for the other order"
    filled = (traces[1].output_ids, traces[1].blank_mask, None)
    got_traces, got, _ = compute.ENGINE.submit(compute.Job(key, [filled], [None], ["score"]))
    assert got_traces == [None], "a filled row is scored, not decoded"
    assert got[0] == pytest.approx(oracle[1], abs=1e-5), "kind score is blanks_logp of the filled row"
