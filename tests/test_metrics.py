"""Card metrics (model/metrics.py) against independent computations: the base's NLL is HF's own
loss, A3's left-to-right NLL is the model's loss on the same rows, the left-only infilling NLL is
a sum of the causal LM's log-probabilities, and a fresh LoRA adapter (B = 0) scores exactly like
the full checkpoint it wraps."""
import json

import pytest
import torch

from model.core.a3 import A3Model
from model.corpus.austen import load_packed
from model.core.groups import group_ids_from_order
from model.backbones.lora import add_lora, save_adapter
from model.evaluation.metrics import main

from conftest import make_base, write_corpus

ROWS, SEQ = 4, 64  # the infilling spans need T // 4 <= 3T // 4 - 20


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(corpus dir, base dir, A3 dir, adapter dir, tokenizer) on one tiny random backbone."""
    d = tmp_path_factory.mktemp("metrics")
    corpus, _ = write_corpus(d / "corpus", n_lines=200, n_train=150, vocab_size=280)
    from model.corpus.austen import load_tokenizer
    tok = load_tokenizer(corpus)
    base = make_base(vocab_size=len(tok), tie_word_embeddings=True)
    base.save_pretrained(d / "base")
    tok.save_pretrained(d / "base")
    A3Model(make_base(vocab_size=len(tok), tie_word_embeddings=True)).save_pretrained(d / "a3", tokenizer=tok)
    adapter = add_lora(A3Model(make_base(vocab_size=len(tok), tie_word_embeddings=True)), r=4, alpha=8)
    save_adapter(adapter, d / "adapter", str(d / "base"), tok)
    return corpus, d / "base", d / "a3", d / "adapter", tok


def run(corpus, model, base, tmp_path, name):
    out = tmp_path / f"{name}.json"
    main(["--model", str(model), "--base", str(base), "--data", str(corpus), "--rows", str(ROWS),
          "--seq-len", str(SEQ), "--json", str(out)])
    return json.loads(out.read_text())


def test_metrics_match_independent_computations(setup, tmp_path):
    corpus, base_dir, a3_dir, _, tok = setup
    res = run(corpus, a3_dir, base_dir, tmp_path, "full")
    rows = load_packed(corpus, "eval", SEQ, tok)[:ROWS]
    assert res["rows"] == len(rows) == ROWS, f"should score {ROWS} rows, scored {res['rows']}"
    base = A3Model.from_pretrained(a3_dir).base  # same seeded weights as base_dir
    with torch.no_grad():
        hf = base(input_ids=rows, labels=rows).loss.item()
        a3 = A3Model.from_pretrained(a3_dir).eval()
        g = torch.arange(SEQ).expand(ROWS, SEQ)
        a3_loss = a3(rows, g, labels=A3Model.default_labels(rows)).loss.item()
    assert res["base_ar"] == pytest.approx(hf, rel=1e-5), f"base_ar {res['base_ar']} vs HF loss {hf}"
    assert res["a3_ar"] == pytest.approx(a3_loss, rel=1e-5), f"a3_ar {res['a3_ar']} vs A3 loss {a3_loss}"
    for key in ("a3_random", "a3_group2", "a3_group4", "a3_group8", "infill_a3", "infill_base_left"):
        assert res[key] > 0 and res[key] == res[key], f"{key} should be a positive finite NLL, got {res[key]}"
    assert 0 <= res["word_top1_a3"] <= 1 and res["words"] <= ROWS, f"word accuracy out of range: {res}"
    assert res["infill_gain"] == pytest.approx(1 - res["infill_a3"] / res["infill_base_left"]), "gain definition"


def test_infill_with_both_sides_uses_the_right_context(setup):
    """The A3 infilling score conditions on the right side: changing a token after the span moves it."""
    corpus, _, a3_dir, _, tok = setup
    a3 = A3Model.from_pretrained(a3_dir).eval()
    row = load_packed(corpus, "eval", SEQ, tok)[:1]
    span = list(range(10, 16))
    g = group_ids_from_order(SEQ, [p for p in range(SEQ) if p not in span], [[p] for p in span])[None]
    lp = a3.token_logprobs(row, g)[0, span].sum()
    other = row.clone()
    other[0, 20] = (other[0, 20] + 1) % len(tok)
    assert a3.token_logprobs(other, g)[0, span].sum() != lp, "a token right of the span should change its score"


def test_fresh_adapter_scores_like_the_full_checkpoint(setup, tmp_path):
    """An adapter with B = 0 over the saved base is that base plus w: every metric equal."""
    corpus, base_dir, a3_dir, adapter_dir, _ = setup
    full = run(corpus, a3_dir, base_dir, tmp_path, "full")
    ada = run(corpus, adapter_dir, base_dir, tmp_path, "adapter")
    for key, value in full.items():
        assert ada[key] == pytest.approx(value, rel=1e-5, abs=1e-7), f"{key}: adapter {ada[key]} vs full {value}"
