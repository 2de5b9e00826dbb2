"""Per-domain metrics: does an adapter keep its base's English? The card's definitions, per Brown
genre, over all Brown genres, and on held-out Austen.

    python -m model.metrics --domains --base smollm2-135m-gguf \\
        --model assets/a3-smollm2-lora --model runs/a3-smollm2-mix/final --rows 8 --out docs/domains

For every domain, packed rows of held-out text (BOS + seq_len - 1 tokens, the model's own
tokenizer): `--rows` of data/brown/eval_by_genre/<genre>.txt for each genre, their union as
"brown (all genres)", and `--austen-rows` of data/austen/eval.txt. Metrics (model/evaluation/card_metrics.py, same seed, so every model and the base
see the same rows, spans and words):
  - left to right: A3's exact NLL vs the plain base's (forgetting), and the relative change
  - infilling: 5-20-token spans, A3 with both sides vs the base with the left side only
  - the right side's gain: the same span tokens, A3 with both sides vs A3 with the text after
    the span cut off, over all span tokens, the first two and the last two
  - masked word top-1: A3 with both sides vs the base with the left side
The base is scored once per domain; the A3 models one after another (one in memory at a time).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from model.backbones.lora import base_tokenizer, load_a3, resolve_base
from model.corpus.austen import encode_texts, pack_sequences

from .card_metrics import RIGHT_SUMS, measure_card, right_gains

PARTS = ("ar", "infill", "word", "right")


def domain_rows(tokenizer, seq_len: int, n_rows: int, brown: str = "data/brown",
                austen: str = "data/austen", austen_rows: int | None = None) -> dict[str, torch.Tensor]:
    """{domain: (rows, seq_len)} held-out rows of each Brown genre (n_rows each), of all of them,
    and of Austen (austen_rows, default n_rows)."""
    def pack(paragraphs, n=n_rows):
        ids = encode_texts(tokenizer, paragraphs)
        return pack_sequences(ids, seq_len, tokenizer.bos_token_id, tokenizer.eos_token_id)[:n]
    out = {}
    genre_dir = Path(brown) / "eval_by_genre"
    if not genre_dir.is_dir():
        raise FileNotFoundError(f"no {genre_dir}; run `python -m model.data prepare --corpus brown`")
    manifest = json.loads((Path(brown) / "manifest.json").read_text())
    for genre in manifest["genres"]:
        out[f"brown: {genre}"] = pack((genre_dir / f"{genre}.txt").read_text(encoding="utf-8").splitlines())
    out["brown (all genres)"] = torch.cat([v for k, v in out.items()])
    out["austen"] = pack((Path(austen) / "eval.txt").read_text(encoding="utf-8").splitlines(), austen_rows or n_rows)
    return out


def run_domains(models: list[str], base_ref: str, n_rows: int, seq_len: int = 256, device: str = "cpu",
                seed: int = 0, log=print, brown: str = "data/brown", austen: str = "data/austen",
                austen_rows: int | None = None, parts: tuple[str, ...] = PARTS) -> dict:
    """{domain: {"base": metrics, model path: metrics, ...}} (the base's and each model's halves)."""
    tok = base_tokenizer(base_ref)
    rows = domain_rows(tok, seq_len, n_rows, brown, austen, austen_rows)
    out = {d: {} for d in rows}
    base = resolve_base(base_ref).to(device).eval()
    for d, r in rows.items():
        if d != "brown (all genres)":  # the union is summed from its genres below
            out[d]["base"] = measure_card(None, base, tok, r.to(device), seed=seed, parts=parts)
    del base
    for path in models:
        model, mtok = load_a3(path, device=device)
        if mtok.get_vocab() != tok.get_vocab():
            raise ValueError(f"{path} uses another tokenizer than its base {base_ref!r}")
        for d, r in rows.items():
            if d != "brown (all genres)":
                out[d][path] = measure_card(model, None, tok, r.to(device), seed=seed, parts=parts)
                log(f"{path} {d}: {out[d][path]}")
        del model
    genres = [d for d in rows if d.startswith("brown: ")]
    for who in ["base", *models]:  # the union: per-row means weighted by rows, spans by tokens, words by count
        out["brown (all genres)"][who] = pool([out[d][who] for d in genres])
    return out


def pool(parts: list[dict]) -> dict:
    """Combine per-genre metric dicts into the union's: left-to-right NLL weighted by rows (each
    row scores the same number of tokens), infilling by span tokens, top-1 by words."""
    res, n = {}, sum(p["rows"] for p in parts)
    tokens = sum(p.get("infill_tokens", 0) for p in parts)
    for key in ("base_ar", "a3_ar"):
        if key in parts[0]:
            res[key] = sum(p[key] * p["rows"] for p in parts) / n
    for key in ("infill_a3", "infill_base_left"):
        if key in parts[0]:
            res[key] = sum(p[key] * p["infill_tokens"] for p in parts) / tokens
    if "infill_a3_left" in parts[0]:
        edges = sum(p["edge_tokens"] for p in parts)
        for key in RIGHT_SUMS:
            n_key = tokens if not key.endswith("2") else edges
            res[key] = sum(p[key] * (p["infill_tokens"] if not key.endswith("2") else p["edge_tokens"])
                           for p in parts) / n_key
        res["edge_tokens"] = edges
        res.update(right_gains(res))
    words = sum(p.get("words", 0) for p in parts)
    for key in ("word_top1_a3", "word_top1_base_left"):
        if key in parts[0]:
            res[key] = sum(p[key] * p["words"] for p in parts) / max(1, words)
    return {"rows": n, "words": words, "infill_tokens": tokens, **res}


def table(results: dict, models: list[str]) -> str:
    """Markdown: per domain, the base and each model (left-to-right change, infilling gain, the
    right side's gain, top-1); columns whose metrics were not measured are left out."""
    names = [Path(m.rstrip("/")).name if "final" not in m else m for m in models]
    first = next(iter(results.values()))
    b0, m0 = first["base"], first[models[0]]
    cols: list[tuple[str, object]] = [("rows", lambda res: str(res["base"]["rows"]))]
    if "base_ar" in b0:
        cols.append(("base L2R", lambda res: f"{res['base']['base_ar']:.3f}"))
        cols += [(f"{n}: L2R (vs base)", lambda res, m=m: f"{res[m]['a3_ar']:.3f} "
                  f"({res[m]['a3_ar'] / res['base']['base_ar'] - 1:+.1%})") for m, n in zip(models, names)]
    if "infill_base_left" in b0:
        cols.append(("base left-only span", lambda res: f"{res['base']['infill_base_left']:.3f}"))
        cols += [(f"{n}: span both sides (gain)", lambda res, m=m: f"{res[m]['infill_a3']:.3f} "
                  f"({1 - res[m]['infill_a3'] / res['base']['infill_base_left']:+.1%})") for m, n in zip(models, names)]
    if "right_gain" in m0:
        cols += [(f"{n}: right-side gain, all / first 2 / last 2", lambda res, m=m: f"{res[m]['right_gain']:+.1%} / "
                  f"{res[m]['right_gain_first2']:+.1%} / {res[m]['right_gain_last2']:+.1%}") for m, n in zip(models, names)]
    if "word_top1_base_left" in b0:
        cols.append(("base word top-1", lambda res: f"{res['base']['word_top1_base_left']:.1%}"))
        cols += [(f"{n}: word top-1", lambda res, m=m: f"{res[m]['word_top1_a3']:.1%}") for m, n in zip(models, names)]
    lines = ["| domain | " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    lines += ["| " + " | ".join([d] + [f(res) for _, f in cols]) + " |" for d, res in results.items()]
    return "\n".join(lines) + "\n"


def main(argv) -> None:
    """`python -m model.metrics --domains ...`: the per-domain table of every --model against --base."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m model.metrics --domains", description=__doc__.split("\n\n")[0])
    p.add_argument("--domains", action="store_true", help="(this table)")
    models = p.add_argument_group("the models")
    models.add_argument("--model", action="append", required=True, help="an A3 checkpoint or adapter; repeat to compare")
    models.add_argument("--base", required=True, help="the base they were adapted from (smollm2-135m-gguf or a folder)")
    models.add_argument("--parts", default=",".join(PARTS), help=f"which metrics, comma-separated, of {','.join(PARTS)}")
    rows = p.add_argument_group("the held-out rows, the same for every model")
    rows.add_argument("--brown", default="data/brown", help="prepared Brown corpus")
    rows.add_argument("--austen", default="data/austen", help="prepared Austen corpus")
    rows.add_argument("--rows", type=int, default=8, help="held-out rows per Brown genre")
    rows.add_argument("--austen-rows", type=int, default=32, help="held-out rows of Austen")
    rows.add_argument("--seq-len", type=int, default=256, help="tokens per row, BOS included")
    run = p.add_argument_group("the run")
    run.add_argument("--seed", type=int, default=0, help="seed of the spans and words")
    run.add_argument("--device", default="cpu", help="cpu or cuda (fp32 on either)")
    run.add_argument("--out", default="docs/domains", help="where domains.md and domains.json go")
    a = p.parse_args(argv)
    if a.rows < 1 or a.seq_len < 48:
        p.error("--rows must be at least 1 and --seq-len at least 48")
    parts = tuple(x.strip() for x in a.parts.split(",") if x.strip())
    if not parts or not set(parts) <= set(PARTS):
        p.error(f"--parts takes some of {','.join(PARTS)}; got {a.parts!r}")
    res = run_domains(a.model, a.base, a.rows, a.seq_len, a.device, a.seed, brown=a.brown, austen=a.austen,
                      austen_rows=a.austen_rows, parts=parts)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "domains.json").write_text(json.dumps(res, indent=1) + "\n")
    text = table(res, a.model)
    (out / "domains.md").write_text(text)
    print(text)
