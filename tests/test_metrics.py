"""Card metrics (model/evaluation/card_metrics.py) against independent computations: the base's NLL is HF's own
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
from model.evaluation.card_metrics import main

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


def test_domains_table_per_genre_union_and_austen(setup, tmp_path):
    """--domains: one row per Brown genre, their union and Austen; the base's left-to-right NLL of a
    genre equals HF's own loss on its rows, and the union pools the genres by rows, span tokens
    and words."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from model.corpus.austen import encode_texts, pack_sequences
    from model.evaluation.domains import run_domains, table
    corpus, base_dir, _, adapter, tok = setup
    lines = (corpus / "eval.txt").read_text().splitlines()
    brown = tmp_path / "brown"
    (brown / "eval_by_genre").mkdir(parents=True)
    for g, chunk in (("news", lines[:25]), ("humor", lines[25:])):
        (brown / "eval_by_genre" / f"{g}.txt").write_text("\n".join(chunk) + "\n")
    (brown / "manifest.json").write_text(json.dumps({"genres": {"news": {}, "humor": {}}}))
    res = run_domains([str(adapter)], str(base_dir), 3, SEQ, seed=0, log=lambda *_: None, brown=str(brown),
                      austen=str(corpus))
    assert list(res) == ["brown: news", "brown: humor", "brown (all genres)", "austen"], f"domains: {list(res)}"
    rows = pack_sequences(encode_texts(tok, lines[:25]), SEQ, tok.bos_token_id, tok.eos_token_id)[:3]
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        logits = base(input_ids=rows).logits[:, :-1]
    hf = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1)).item()
    assert res["brown: news"]["base"]["base_ar"] == pytest.approx(hf, rel=1e-5), "base NLL must equal HF's loss"
    g = [res["brown: news"][str(adapter)], res["brown: humor"][str(adapter)]]
    union = res["brown (all genres)"][str(adapter)]
    want = sum(x["infill_a3"] * x["infill_tokens"] for x in g) / sum(x["infill_tokens"] for x in g)
    assert union["infill_a3"] == pytest.approx(want), "the union pools infilling NLL by span tokens"
    assert union["rows"] == g[0]["rows"] + g[1]["rows"], "the union has every genre's rows"
    text = table(res, [str(adapter)])
    assert text.count("\n") == 2 + 4 and "brown (all genres)" in text, text
