"""The infilling evaluation: sentence windows, system selection, the report, and an end-to-end run
with tiny random checkpoints (A3, diffusion, AR base) on a synthetic corpus."""
from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from model.core.a3 import A3Model
from model.corpus.austen import train_tokenizer
from model.baselines.diffusion import DiffusionLM
from model.evaluation.infilling import (all_systems, main, make_windows, paired, select_systems, split_sentences, summarize,
                        verdict)

WORDS = "the cat sat on a mat and a dog ran to the park while birds sang in tall green trees".split()


def _sentence(rng) -> str:
    s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))
    return s[0].upper() + s[1:] + rng.choice([".", "!", "?"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """eval.txt of paragraphs with 3 to 8 sentences, and a tokenizer trained on it."""
    d = tmp_path_factory.mktemp("evalcorpus")
    rng = random.Random(0)
    paras = [" ".join(_sentence(rng) for _ in range(rng.randint(3, 8))) for _ in range(12)]
    (d / "eval.txt").write_text("\n".join(paras) + "\n")
    tok = train_tokenizer(paras * 3, vocab_size=300)
    tok.save_pretrained(str(d / "tokenizer"))
    return d, paras, tok


def test_split_sentences():
    text = 'Mr. Darcy bowed. "Oh!" said she. Was it so? It was -- indeed it was!'
    assert split_sentences(text) == ["Mr. Darcy bowed.", '"Oh!" said she.', "Was it so?", "It was -- indeed it was!"]


def test_windows_are_five_sentences_of_one_paragraph_with_the_middle_blanked(corpus):
    _, paras, tok = corpus
    wins = make_windows(paras, tok, seed=0)
    expected = sum(max(0, len(split_sentences(p)) - 4) for p in paras)
    assert 0 < len(wins) <= expected, f"{len(wins)} windows kept of {expected} possible"
    for w in wins:
        para = paras[w.paragraph]
        assert " ".join(w.sentences) in para, "a window is five consecutive sentences of one paragraph"
        assert tok.decode(w.reference_ids) == " " + w.reference, "the blank is the middle sentence with its space"
        assert [w.input_ids[p] for p in w.blank] == [tok.mask_token_id] * len(w.blank), "blanks hold <mask>"
        assert w.blank == list(range(w.blank[0], w.blank[0] + len(w.blank))), "the blank is one contiguous span"
        full = tok.decode(w.reference_sequence()[1:])
        assert full == " ".join(w.sentences), "BOS + left + blank + right re-reads as the window"
        assert len(w.input_ids) <= 256 and 5 <= len(w.blank) <= 64
    assert [w.index for w in wins] == list(range(len(wins)))


def test_windows_are_seeded_and_a_short_run_is_a_prefix(corpus):
    _, paras, tok = corpus
    full = make_windows(paras, tok, seed=3)
    short = make_windows(paras, tok, n=4, seed=3)
    key = lambda ws: [(w.paragraph, w.sentence) for w in ws]  # noqa: E731
    assert key(short) == key(full)[:4], "--windows N takes the first N of the same shuffled list"
    assert key(make_windows(paras, tok, seed=4)) != key(full), "another seed, another order"


def test_select_systems():
    keys = {s.key for s in all_systems()}
    assert len(keys) == 7 * 3 + 3 + 1, "7 strategies x 3 group sizes, 3 diffusion settings, AR"
    assert [s.key for s in select_systems("diffusion-*,ar")] == ["diffusion-1", "diffusion-2", "diffusion-4", "ar"]
    assert {s.key for s in select_systems("a3-*-4")} == {f"a3-{s}-4" for s in
                                                          ("left_to_right", "right_to_left", "random", "outside_in",
                                                           "confidence", "margin", "entropy")}
    with pytest.raises(SystemExit, match="matches no system"):
        select_systems("nothing")


def test_summary_and_verdict_follow_the_numbers():
    """Means, NLL per token, and a verdict that says 'loses' when A3 is worse."""
    systems = select_systems("a3-left_to_right-1,diffusion-1,ar")
    recs = []
    for w in range(10):
        for key, rl, nll in (("a3-left_to_right-1", 10 + w % 2, 20.0), ("diffusion-1", 30 + w % 3, 10.0),
                             ("ar", 5.0, 40.0)):
            recs.append({"window": w, "system": key, "rouge1": rl, "rouge2": 0.0, "rougeL": rl, "passes": 10,
                         "seconds": 0.01, "nll": nll, "tokens": 10, "hyp": ""})
    rows = summarize(recs, systems, 10)
    a3 = rows[0]
    assert a3["rougeL"] == pytest.approx(10.5) and a3["nll"] == pytest.approx(2.0) and a3["n"] == 10
    m, ci, n = paired(recs, "a3-left_to_right-1", "diffusion-1", 10)
    assert n == 10 and m == pytest.approx(10.5 - 31.0 + 0.1 * 0 - 0.0, abs=0.2)
    text = "\n".join(verdict(rows, recs, 10))
    assert "loses to the diffusion" in text, text
    assert "higher (worse) than the diffusion ELBO bound" in text, text
    assert "A3's best beats it" in text, text
    assert "Unequal budgets" not in text, "no budget warning without budgets"
    same = "\n".join(verdict(rows, recs, 10, {"a3": 1000, "diffusion": 1020}))
    assert "Unequal budgets" not in same, "budgets within 5% count as equal"
    diff = "\n".join(verdict(rows, recs, 10, {"a3": 3000, "diffusion": 1000}))
    assert "3,000 tokens" in diff and "(3.0x)" in diff, diff


def _save_models(d, tok):
    """Tiny random A3, diffusion and base checkpoints over the corpus tokenizer."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=37, max_position_embeddings=256,
                      bos_token_id=0, eos_token_id=1, pad_token_id=2, initializer_range=0.3)
    base = LlamaForCausalLM(cfg).eval()
    base.save_pretrained(d / "base")
    A3Model(base).save_pretrained(d / "a3", tokenizer=tok)
    DiffusionLM(LlamaForCausalLM(cfg), mask_token_id=tok.mask_token_id).save_pretrained(d / "diff", tokenizer=tok)


def test_end_to_end_writes_table_and_plot_and_resumes(corpus, tmp_path):
    data, _, tok = corpus
    _save_models(tmp_path, tok)
    systems = "a3-left_to_right-*,a3-confidence-1,diffusion-1,diffusion-4,ar"
    argv = ["--a3", str(tmp_path / "a3"), "--diffusion", str(tmp_path / "diff"), "--base", str(tmp_path / "base"),
            "--data", str(data), "--windows", "2", "--systems", systems, "--out", str(tmp_path / "out"),
            "--work", str(tmp_path / "work"), "--elbo-samples", "2", "--progress", "0"]
    main(argv)
    recs = [json.loads(x) for x in (tmp_path / "work" / "records.jsonl").read_text().splitlines()]
    n_sys = len(select_systems(systems))
    assert len(recs) == 2 * n_sys, f"one record per (window, system): {len(recs)}"
    for r in recs:
        L = r["tokens"]
        want = {"a3-left_to_right-1": L, "a3-left_to_right-2": -(-L // 2), "a3-left_to_right-4": -(-L // 4),
                "a3-confidence-1": L, "diffusion-1": L, "diffusion-4": -(-L // 4), "ar": L}[r["system"]]
        assert r["passes"] == want, f"{r['system']}: {r['passes']} forward passes for {L} blanks, want {want}"
        assert all(0 <= r[k] <= 100 for k in ("rouge1", "rouge2", "rougeL")) and r["nll"] > 0
    report = (tmp_path / "out" / "infill.md").read_text()
    for kind in ("A3 group-factorized", "diffusion ELBO bound", "AR exact, left context only"):
        assert kind in report, f"the table should label the likelihood kind {kind!r}"
    assert report.count("\n| a3 |") == 4 and "python -m model.eval --a3" in report
    assert (tmp_path / "out" / "infill_rougeL_vs_passes.html").stat().st_size > 1000
    assert (tmp_path / "out" / "infill_rougeL_vs_passes.png").read_bytes()[:4] == b"\x89PNG"
    # a second run finds everything done and adds nothing; another setup in the same work dir is refused
    main(argv)
    assert len((tmp_path / "work" / "records.jsonl").read_text().splitlines()) == 2 * n_sys, "resume re-ran work"
    with pytest.raises(SystemExit, match="another setup"):
        main(argv + ["--seed", "5"])
