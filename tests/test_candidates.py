"""Candidate fills and their ranking: the pools, the scores against a hand-built oracle, the
rules, blanks of other lengths, and the study's report on a few windows of a synthetic corpus."""
from __future__ import annotations

import pytest
import torch

from model.core.candidates import (SHIPPED_LENGTH_RULE, SHIPPED_LENGTH_WEIGHTS, SHIPPED_RULE, Candidate,
                                   agreement, candidate_batch, candidates_of, fluent, length_grid, length_requests,
                                   make_candidates, needs_both, needs_right, pool_configs, rank, resize_blank,
                                   resize_encoded, with_both)
from model.core.decode import run_batch
from model.core.infill import Blank, encode_segments
from model.core.scoring import FillScores, blanks_logp, score_blanks, score_fills
from model.core.trace import Trace


def _story(n_blank=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.cat([torch.tensor([0]), torch.randint(4, 99, (7,), generator=gen), torch.full((n_blank,), 3),
                     torch.randint(4, 99, (6,), generator=gen)])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[8:8 + n_blank] = True
    return ids, mask


def test_pools_start_with_greedy_left_to_right_and_differ():
    for pool in ("orders", "samples"):
        cfgs = pool_configs(pool, 8, seed=3)
        assert len(cfgs) == 8, f"{pool}: 8 members asked"
        first = cfgs[0][1]
        assert first.strategy == "left_to_right" and first.group_size == 1 and not first.sampling.do_sample, \
            f"{pool}: member 0 must be greedy left to right (the baseline)"
    orders = pool_configs("orders", 8)
    assert len({(c.strategy, c.group_size) for _, c in orders}) == 8, "the orders pool must hold 8 different orders"
    samples = pool_configs("samples", 8)
    assert len({c.sampling.seed for _, c in samples[1:]}) == 7 and all(c.sampling.do_sample for _, c in samples[1:]), \
        "the samples pool draws with 7 different seeds"
    with pytest.raises(ValueError, match="at most"):
        pool_configs("orders", 9)
    with pytest.raises(ValueError, match="unknown candidate pool"):
        pool_configs("beams", 4)


def test_fill_scores_match_token_logprobs(a3_llama):
    """story / fill_left / right from one left-to-right scoring, both from score_blanks (the oracles)."""
    ids, mask = _story()
    ids[mask] = torch.tensor([11, 12, 13, 14, 15])
    s = score_fills(a3_llama, [(ids, mask)])[0]
    lp = a3_llama.token_logprobs(ids[None], torch.arange(ids.numel())[None])[0]
    right = (~mask) & (torch.arange(ids.numel()) > 8)
    assert s.story == pytest.approx(lp.sum().item(), abs=1e-4), "story: the sum of left-to-right log p"
    assert s.fill_left == pytest.approx(lp[mask].sum().item(), abs=1e-4), "fill_left: the fill's share of it"
    assert s.right == pytest.approx(lp[right].sum().item(), abs=1e-4), "right: the tokens after the blank"
    assert s.both == pytest.approx(score_blanks(a3_llama, ids, mask).sum().item(), abs=1e-4), "both: score_blanks"
    assert s.n_fill == 5, "five blank tokens"


def test_scoring_without_the_right_side_keeps_what_the_rules_read(a3_llama):
    """score_fills(right=False) stops its left-to-right walk at the last blank: fill_left and both
    equal the full scoring's (one blank, and two blanks with text between), story and right are
    None, and a rule that does not read them ranks the same candidates in the same order."""
    ids, mask = _story()
    two = mask.clone()
    two[2:4] = True  # a second blank, before the first, with visible text between them
    rows = []
    for m in (mask, two):
        for seed in range(3):
            filled = ids.clone()
            filled[m] = torch.randint(4, 99, (int(m.sum()),), generator=torch.Generator().manual_seed(seed))
            rows.append((filled, m))
    full, left = score_fills(a3_llama, rows), score_fills(a3_llama, rows, right=False)
    for i, (f, s) in enumerate(zip(full, left)):
        assert s.fill_left == pytest.approx(f.fill_left, abs=1e-5), f"row {i}: fill_left without the right side"
        assert s.both == pytest.approx(f.both, abs=1e-5), f"row {i}: both without the right side"
        assert (s.story, s.right, s.n_fill) == (None, None, f.n_fill), f"row {i}: story and right are not computed"
    assert not needs_right(SHIPPED_RULE) and not needs_right("fluent_both_per_token") and not needs_right("mbr"), \
        "the known-length rule and the per-token likelihoods read no right side"
    assert needs_right(SHIPPED_LENGTH_RULE, SHIPPED_LENGTH_WEIGHTS) and needs_right("story") and needs_right("fluent_right"), \
        "the chosen-length rule and the story / right rules read it"
    assert not needs_right("mix", {"mbr": 1.0, "both_per_token": 1.0}), "a mix without story / right reads none"
    cfgs = pool_configs("orders", 6)
    reqs = [(ids.tolist(), mask.tolist(), None, 5)]
    want, got = make_candidates(a3_llama, reqs, cfgs), make_candidates(a3_llama, reqs, cfgs, right=False)
    for rule in (SHIPPED_RULE, "mbr", "fluent_both_per_token", "fill_left_per_token"):
        assert [c.label for c in rank(got, rule)] == [c.label for c in rank(want, rule)], \
            f"{rule}: the same order with and without the right side"
    with pytest.raises(ValueError, match="right=True"):
        rank(got, "fluent_right")


def test_scoring_both_sides_only_for_the_shown_fill(a3_llama):
    """make_candidates(both=False) leaves `both` to the one fill shown: the greedy left-to-right
    member takes it from its own run (exact: the full scoring's number), the others have None,
    with_both adds it (the full scoring's number), the shipped rules rank the same without it, and
    a rule that reads it refuses with a message."""
    ids, mask = _story()
    cfgs = pool_configs("orders", 5)
    reqs = [(ids.tolist(), mask.tolist(), None, 5)]
    want = make_candidates(a3_llama, reqs, cfgs, right=False)
    got = make_candidates(a3_llama, reqs, cfgs, right=False, both=False)
    assert got[0].scores.both == pytest.approx(want[0].scores.both, abs=1e-4), \
        "the greedy left-to-right run's own log-likelihood is its both-sides score"
    assert all(c.scores.both is None for c in got[1:]), "no both-sides walk for the other orders"
    assert [c.scores.fill_left for c in got] == pytest.approx([c.scores.fill_left for c in want], abs=1e-5), \
        "fill_left does not depend on the both-sides walk"
    for rule in (SHIPPED_RULE, "mbr", "fill_left_per_token"):
        assert not needs_both(rule), f"{rule} does not read both sides"
        assert [c.label for c in rank(got, rule)] == [c.label for c in rank(want, rule)], f"{rule}: the same order"
    assert needs_both("fluent_both_per_token") and needs_both("mix", {"both_per_token": 1.0}), \
        "the both-sides rules read it"
    with pytest.raises(ValueError, match="both=True"):
        rank(got, "fluent_both_per_token")
    for c, w in zip(got[1:], want[1:]):
        assert with_both(a3_llama, c).scores.both == pytest.approx(w.scores.both, abs=1e-4), \
            f"{c.label}: with_both gives the full scoring's number"


def test_make_candidates_covers_every_config_and_length(a3_llama):
    ids, mask = _story()
    reqs = []
    for n in (2, 5, 7):
        new_ids, new_mask, shift = resize_blank(ids.tolist(), mask.tolist(), list(range(8, 13)), n, 3)
        assert len(new_ids) == ids.numel() + shift and sum(new_mask) == n, "resize_blank keeps the text around the blank"
        reqs.append((new_ids, new_mask, None, n))
    cands = make_candidates(a3_llama, reqs, pool_configs("orders", 3))
    assert len(cands) == 9, "3 lengths x 3 orders"
    assert sorted(len(c.fill_ids) for c in cands) == [2, 2, 2, 5, 5, 5, 7, 7, 7], "each fill has its blank's length"
    assert all(c.scores.n_fill == c.length for c in cands), "scores are of the candidate's own length"
    assert all(not set(c.fill_ids) & {0, 1, 2} for c in cands), "no special token in a candidate"


def test_a_batch_decoded_elsewhere_becomes_the_same_candidates(a3_llama):
    """candidate_batch's rows decoded by someone else's run_batch (the app's engine) and handed to
    candidates_of give make_candidates' candidates: one assembly, wherever the decoding runs."""
    ids, mask = _story()
    reqs = length_requests(ids.tolist(), mask.tolist(), [list(range(8, 13))], [3, 6])
    cfgs = pool_configs("orders", 2)
    rows, row_cfgs = candidate_batch(reqs, cfgs)
    traces = run_batch(a3_llama, [(r[0], r[1]) for r in rows], row_cfgs, None, [r[2] for r in rows])
    got = candidates_of(reqs, cfgs, traces, score_fills(a3_llama, [(t.output_ids, t.blank_mask) for t in traces]))
    want = make_candidates(a3_llama, reqs, cfgs)
    assert [(c.label, c.length, c.fill_ids) for c in got] == [(c.label, c.length, c.fill_ids) for c in want], \
        "the same candidates, labels and lengths in the same order"
    assert [c.scores.both for c in got] == pytest.approx([c.scores.both for c in want], abs=1e-5), "the same scores"
    logp = blanks_logp(a3_llama, [(t.output_ids, t.blank_mask) for t in traces])
    assert logp == pytest.approx([c.scores.both for c in want], abs=1e-4), "blanks_logp is score_fills' `both`"


def test_resizing_a_blank_equals_encoding_it_at_that_length():
    """resize_encoded (the app's chosen lengths) and length_requests (the fills study's) give what
    encoding the story with the blank at that length gives: ids, mask, spans and the layout."""
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = "<s> </s> <pad> Anne had not expected a letter . She it twice , and then by the fire".split()
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)},
                                                                              unk_token="</s>")),
                                  bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    segs = ["Anne had not expected a letter . She ", Blank(3), " it twice , and then ", Blank(4, choose=(1, 9)),
            " by the fire"]
    enc = encode_segments(tok, segs, tok.bos_token_id)
    for n in (1, 4, 9):
        want = encode_segments(tok, segs[:3] + [Blank(n, choose=(1, 9))] + segs[4:], tok.bos_token_id)
        got = resize_encoded(enc, 1, n)
        assert (got.input_ids, got.blank_mask, got.layout) == (want.input_ids, want.blank_mask, want.layout), \
            f"resize_encoded at {n} tokens differs from encoding the story at {n}"
        (ids, mask, spans, length), = length_requests(enc.input_ids, enc.blank_mask, enc.blank_spans, [n], blank=1)
        assert (ids, mask, spans, length) == (want.input_ids, want.blank_mask, want.blank_spans, n), \
            f"length_requests at {n} tokens differs from encoding the story at {n}"


def test_rank_orders_by_the_rule_and_mbr_picks_the_consensus():
    def cand(fill, right):
        t = Trace([0] + fill, [False] + [True] * len(fill), [], "block")
        t.steps = [{"positions": list(range(1, len(fill) + 1)), "token_ids": fill, "probs": [0.5] * len(fill)}]
        return Candidate("c", t, FillScores(0.0, 0.0, right, 0.0, len(fill)), len(fill))
    cands = [cand([5, 6, 7], -3.0), cand([5, 6, 8], -1.0), cand([9, 9, 9], -2.0), cand([5, 6, 7, 8], -5.0)]
    assert [c.scores.right for c in rank(cands, "right")] == [-1.0, -2.0, -3.0, -5.0], "highest right first"
    assert rank(cands, "greedy")[0] is cands[0], "greedy keeps the first candidate"
    agree = agreement(cands)
    # by hand: LCS F-measures 2*lcs/(|a|+|b|); [5,6,7,8] holds both [5,6,7] and [5,6,8]
    want = [(4 / 6 + 0 + 6 / 7) / 3, (4 / 6 + 0 + 6 / 7) / 3, 0.0, (6 / 7 + 6 / 7 + 0) / 3]
    assert agree == pytest.approx(want), f"agreement {agree} vs hand-computed {want}"
    assert rank(cands, "mbr")[0] is cands[3], "mbr picks the fill that agrees most with the others"


def test_fluent_mbr_takes_the_consensus_among_fluent_fills():
    def cand(fill, fill_left):
        t = Trace([0] + fill, [False] + [True] * len(fill), [], "block")
        t.steps = [{"positions": list(range(1, len(fill) + 1)), "token_ids": fill, "probs": [0.5] * len(fill)}]
        return Candidate("c", t, FillScores(0.0, fill_left, 0.0, 0.0, len(fill)), len(fill))
    # fill_left per token: -1.5, -1.8, -4.0 (disfluent: 2.5 nats a token below the best), -2.4
    cands = [cand([5, 6, 7, 8], -6.0), cand([5, 9, 7, 3], -7.2), cand([5, 6, 7, 3], -16.0), cand([4, 4, 4, 4], -9.6)]
    agree = agreement(cands)
    assert max(range(4), key=lambda i: agree[i]) == 2, f"the disfluent fill is the consensus: {agree}"
    assert rank(cands, "mbr")[0] is cands[2], "plain agreement picks it"
    gate = fluent(cands)
    # by hand: fill_left per token -1.5, -1.8, -4.0, -2.4; within FLUENT_NATS = 1.0 of the best -1.5
    assert gate == [True, True, False, True], f"only the third fill is disfluent: {gate}"
    ranked = rank(cands, "fluent_mbr")
    assert cands[0].values["fluent_mbr"] == agree[0], "a gated rule records the rule's own value"
    # fluent agreement by hand: [5,6,7,8] and [5,9,7,3] both (4/8 + 6/8 + 0) / 3; the pool's order breaks the tie
    assert agree[0] == pytest.approx(0.5 / 3 + 0.75 / 3) and agree[1] == pytest.approx(agree[0]), agree
    assert ranked[0] is cands[0], "fluent_mbr picks the most agreed-with fluent fill"
    assert ranked[-1] is cands[2], "the disfluent consensus ranks below every fluent fill"
    w = {"right": 1.0, "mbr": 8.0}  # right is 0 for all four: mix is 8 x agreement
    mixed, gated = rank(cands, "mix", weights=w), rank(cands, "fluent_mix", weights=w)
    assert [c.values["fluent_mix"] for c in cands] == [c.values["mix"] for c in cands] == \
        pytest.approx([8 * a for a in agree]), "fluent_mix records mix's own values"
    assert mixed[0] is cands[2] and gated[0] is cands[0] and gated[-1] is cands[2], \
        "the gate moves the disfluent fill from first to last"


def test_length_grid():
    assert length_grid(1, 44, 9) == sorted(set(length_grid(1, 44, 9))), "distinct and sorted"
    g = length_grid(1, 44, 9)
    assert g[0] == 1 and g[-1] == 44 and len(g) >= 7, f"from 1 to 44: {g}"
    assert length_grid(5, 5) == [5], "a fixed length is one length"
    with pytest.raises(ValueError, match="1 <= low <= high"):
        length_grid(9, 3)


@pytest.mark.parametrize("signal,pools", [(False, None), (True, None), (True, "orders,signal"), (True, "greedy,signal")])
def test_fills_study_and_report_on_a_synthetic_corpus(tmp_path, signal, pools):
    """python -m model.fills on 4 windows of a tiny random model: the records and the table; with a
    length signal, a fourth pool whose fills end themselves within the slots; with --pools, only
    those pools run and are reported."""
    import json
    import random

    from conftest import make_a3
    from model.corpus.austen import train_tokenizer
    from model.evaluation.fill_study import main
    words = "the cat sat on a mat and a dog ran to the park while birds sang in tall green trees".split()
    rng = random.Random(0)
    sent = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(5, 9))).capitalize() + "."  # noqa: E731
    paras = [" ".join(sent() for _ in range(7)) for _ in range(6)]
    data = tmp_path / "data"
    data.mkdir()
    (data / "eval.txt").write_text("\n".join(paras) + "\n")
    tok = train_tokenizer(paras * 3, vocab_size=300)
    model = make_a3(vocab_size=len(tok), max_position_embeddings=256)
    if signal:
        model.a3_config.length_signal = {"empty_id": 3, "empty_token": "<mask>", "max_slots": 12}
    model.save_pretrained(tmp_path / "m", tokenizer=tok)
    main(["--model", str(tmp_path / "m"), "--data", str(data), "--windows", "4", "--work", str(tmp_path / "w"),
          "--out", str(tmp_path / "out"), *(["--pools", pools] if pools else [])])
    recs = [json.loads(x) for x in (tmp_path / "w" / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 4, "one record per window"
    kinds = {c["kind"] for c in recs[0]["candidates"]}
    want = {p.replace("greedy", "orders") for p in pools.split(",")} if pools else {
        "orders", "samples", "lengths", *(["signal"] * signal)}
    assert kinds == want, f"pools per window: {kinds}, asked for {want}"
    table = (tmp_path / "out" / "fills-m.md").read_text()
    n_orders = sum(c["kind"] == "orders" for c in recs[0]["candidates"])
    if pools and "greedy" in pools:
        assert n_orders == 1 and "| orders | 1 | greedy |" in table, "greedy: the orders pool's first member alone"
    else:
        assert n_orders == 8, f"the orders pool holds 8 members; got {n_orders}"
        assert "| orders | 8 | right |" in table and "| orders | 8 | fluent_right |" in table, table[:400]
    assert ("| lengths |" in table) == ("lengths" in want), "the lengths pool is reported when it ran"
    if signal:
        ends = [c for r in recs for c in r["candidates"] if c["kind"] == "signal"]
        assert len(ends) == 16 and all(1 <= c["length"] <= 12 for c in ends), "4 members, each its own length"
        assert all(3 not in c["fill_ids"] for c in ends), "no fill holds the empty token"
        assert "| signal | 4 | fluent_mbr |" in table, "the report ranks the signal pool"


def test_fills_study_refuses_pools_without_the_greedy_baseline(capsys):
    """--pools must name known pools and exactly one of orders / greedy (every rule's baseline)."""
    from model.evaluation.fill_study import main
    for bad, says in (("signal", "one of orders or greedy"), ("orders,greedy", "one of orders or greedy"),
                      ("orders,lenghts", "unknown pool")):
        with pytest.raises(SystemExit):
            main(["--pools", bad, "--windows", "1"])
        err = capsys.readouterr().err
        assert says in err, f"--pools {bad}: the message should say {says!r}; got {err[-200:]!r}"


class _Words:
    """decode(ids) -> one word per id: enough for the study's records (ROUGE-L over token ids)."""

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"w{i}" for i in ids)


def test_the_fills_study_and_the_app_pick_the_same_candidate(a3_llama):
    """One owner for ranking: the study's report ranks its recorded candidates (after a JSON round
    trip, as records.jsonl holds them) with the core's `rank`, the app's ranking; every rule, each
    pool, picks the same candidate from both."""
    import json

    from rouge_score.rouge_scorer import RougeScorer

    from model.evaluation.fill_study import LENGTH_CONFIGS, candidate_records
    from model.evaluation.fills_report import Recorded, choose
    ids, mask = _story(5)
    at = lambda lengths: length_requests(ids.tolist(), mask.tolist(), [list(range(8, 13))], lengths)  # noqa: E731
    rules = [(r, None) for r in ("greedy", "story", "right", "both_per_token", "fill_left_per_token", "mbr",
                                 SHIPPED_RULE)]
    rules += [("mix", SHIPPED_LENGTH_WEIGHTS), (SHIPPED_LENGTH_RULE, SHIPPED_LENGTH_WEIGHTS)]
    pools = [("orders", at([5]), pool_configs("orders", 8)), ("samples", at([5]), pool_configs("samples", 8, seed=1)),
             ("lengths", at([2, 5, 8]), LENGTH_CONFIGS)]
    picks = set()
    for kind, requests, configs in pools:
        cands = make_candidates(a3_llama, requests, configs)
        rows = candidate_records(kind, cands, RougeScorer(["rougeL"]), "w5 w6 w7 w8 w9", _Words())
        recorded = [Recorded.of(c) for c in json.loads(json.dumps(rows))]
        for rule, weights in rules:
            app = cands.index(rank(cands, rule, **({"weights": weights} if weights else {}))[0])
            chosen = choose(recorded, rule, weights=weights)
            study = next(i for i, c in enumerate(recorded) if c is chosen)
            assert study == app, f"{kind}, {rule}: the study picks candidate {study}, the app {app}"
            picks.add((kind, app))
    assert len(picks) > 3, f"the rules should disagree somewhere for the check to mean something: {sorted(picks)}"


def test_the_report_pairs_each_row_with_its_own_window():
    """tune_mix fits on one half of the windows and ranks the other: its rows come back in window
    order, so the 'within 25%' column compares each pick with its own window's true length."""
    from model.evaluation.fills_report import Study, tune_mix

    def cand(kind, length, rouge):
        return {"kind": kind, "length": length, "fill_ids": list(range(4, 4 + length)), "rougeL": rouge,
                "story": -length, "fill_left": -length, "right": -1.0, "both": -length, "n_fill": length, "passes": 1}

    records = []
    for w in range(6):  # windows 0..5, true lengths 5, 10, ..., 30; each window's lengths off by its own amounts
        L = 5 * (w + 1)
        records.append({"window": w, "true_length": L, "candidates": [cand("orders", L, 10.0)] + [
            cand("lengths", L + d, 10.0 - abs(d)) for d in (-1 - w % 3, 1 + w, 2 + 2 * w)]})
    rows, _ = tune_mix(Study(records), "lengths", 3, lengths=True)
    for r, row in zip(records, rows):
        lengths = {c["length"] for c in r["candidates"] if c["kind"] == "lengths"}
        assert row[3] + r["true_length"] in lengths, f"window {r['window']}: its row picks length " \
            f"{row[3] + r['true_length']}, not one of its own candidates' {sorted(lengths)}"
