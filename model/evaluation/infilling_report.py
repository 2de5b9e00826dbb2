"""The infilling evaluation's report: from model.eval's records to OUT/infill.md and its plot.

    summarize, paired       per-system means (ROUGE, passes, ms, NLL per token) and paired R-L differences
    verdict, table          the report's answers to the issue's questions and its Markdown table
    figure, series          the plotly chart of ROUGE-L vs forward passes, and its series
    write_png               that chart as PNG: plotly/kaleido, else drawn with PIL
    budget, write_report    the training tokens recorded in the checkpoints; the whole report

Used by `python -m model.eval` (after the run, or alone with `--report-only`); the protocol and the
record format are in model/evaluation/infilling.py's docstring.
"""
from __future__ import annotations

import json
import math
import platform
import statistics
from pathlib import Path

import torch

from model.core import checkpoint

from .infill_task import STRATEGIES, EvalSystem, Window

ROUGE = ("rouge1", "rouge2", "rougeL")  # the ROUGE variants reported

NLL_KIND = {"a3": "A3 group-factorized (exact at k=1)", "diffusion": "diffusion ELBO bound (>= NLL)",
            "ar": "AR exact, left context only"}


def budget(args) -> dict:
    """Training tokens after stage 0 recorded in each adapted checkpoint (equal budgets are the point)."""
    out = {}
    for name in ("a3", "diffusion"):
        sec = checkpoint.section(getattr(args, name), name)
        if sec is not None:
            tr = sec.get("training") or {}
            stages = tr.get("stages")
            if stages and tr.get("batch_size") and tr.get("seq_len"):
                # the recipe's own count: every stage but the AR base's, in tokens
                out[name] = sum(s["steps"] for s in stages if s["sampler"] != "base") * tr["batch_size"] * tr["seq_len"]
            else:
                out[name] = tr.get("tokens")
    return out


def summarize(records: list[dict], systems: list[EvalSystem], n_windows: int) -> list[dict]:
    """One row per system over windows 0..n_windows-1: means, NLL per token, R-L 95% half-width."""
    rows = []
    for s in systems:
        rs = [r for r in records if r["system"] == s.key and r["window"] < n_windows]
        if not rs:
            continue
        rl = [r["rougeL"] for r in rs]
        rows.append({
            "system": s.key, "family": s.family, "strategy": s.strategy or "left context", "k": s.k,
            "n": len(rs), "passes": statistics.mean(r["passes"] for r in rs),
            "ms": 1000 * statistics.mean(r["seconds"] for r in rs),
            **{k: statistics.mean(r[k] for r in rs) for k in ROUGE},
            "rougeL_ci": 1.96 * statistics.stdev(rl) / math.sqrt(len(rl)) if len(rl) > 1 else float("nan"),
            "nll": sum(r["nll"] for r in rs) / sum(r["tokens"] for r in rs), "nll_kind": NLL_KIND[s.family]})
    return rows


def paired(records: list[dict], a: str, b: str, n_windows: int) -> tuple[float, float, int]:
    """Mean R-L difference a - b over the windows both have, and its 95% half-width."""
    by = {}
    for r in records:
        if r["window"] < n_windows and r["system"] in (a, b):
            by.setdefault(r["window"], {})[r["system"]] = r["rougeL"]
    d = [v[a] - v[b] for v in by.values() if len(v) == 2]
    if len(d) < 2:
        return float("nan"), float("nan"), len(d)
    return statistics.mean(d), 1.96 * statistics.stdev(d) / math.sqrt(len(d)), len(d)


def verdict(rows: list[dict], records: list[dict], n_windows: int, tokens: dict | None = None) -> list[str]:
    """The issue's three questions, answered from the numbers (whatever they say); `tokens` (budget's
    output) adds a warning when A3 and the diffusion baseline were not trained for the same budget."""
    fam = lambda f: [r for r in rows if r["family"] == f]  # noqa: E731
    a3, dif, ar = fam("a3"), fam("diffusion"), fam("ar")
    out = []
    if a3 and dif:
        best_a3 = max(a3, key=lambda r: r["rougeL"])
        best_d = max(dif, key=lambda r: r["rougeL"])
        m, ci, n = paired(records, best_a3["system"], best_d["system"], n_windows)
        word = ("beats" if m - ci > 0 else "matches (within noise)" if m >= 0 else
                "is slightly below, within noise," if m + ci >= 0 else "loses to")
        out.append(f"- ROUGE-L: A3's best ({best_a3['system']}, {best_a3['rougeL']:.2f}) {word} the diffusion "
                   f"baseline's best ({best_d['system']}, {best_d['rougeL']:.2f}): paired difference "
                   f"{m:+.2f} ± {ci:.2f} (95%, {n} windows).")
        exact = next((r for r in a3 if r["system"] == "a3-left_to_right-1"), None)
        if exact:
            word = "lower (better)" if exact["nll"] < dif[0]["nll"] else "higher (worse)"
            out.append(f"- Likelihood: A3's exact NLL (left_to_right, k=1) {exact['nll']:.3f} nats/token is {word} "
                       f"than the diffusion ELBO bound {dif[0]['nll']:.3f}. The bound is >= the diffusion model's "
                       "true NLL, so a lower A3 number wins only against the bound, not necessarily the NLL.")
        t_a3, t_d = (tokens or {}).get("a3"), (tokens or {}).get("diffusion")
        if t_a3 and t_d and abs(t_a3 / t_d - 1) > 0.05:
            out.append(f"- **Unequal budgets:** A3 was trained on {t_a3:,} tokens after stage 0, the diffusion "
                       f"baseline on {t_d:,} ({t_a3 / t_d:.1f}x); A3-vs-diffusion differences above are not "
                       "at equal budget.")
    if a3 and ar:
        best_a3 = max(a3, key=lambda r: r["rougeL"])
        m, ci, n = paired(records, best_a3["system"], "ar", n_windows)
        word = "beats" if m - ci > 0 else ("is within noise of" if m + ci >= 0 else "loses to")
        out.append(f"- Versus the AR base (left context only, R-L {ar[0]['rougeL']:.2f}): A3's best {word} it, "
                   f"{m:+.2f} ± {ci:.2f} R-L (95%, {n} windows).")
    return out


def table(rows: list[dict]) -> str:
    cols = ("system", "strategy", "k", "passes/infill", "ms/infill", "R-1", "R-2", "R-L (± 95%)", "NLL/token",
            "NLL kind", "n")
    head = "| " + " | ".join(cols) + " |\n" + "|" + " --- |" * len(cols) + "\n"
    return head + "".join(
        f"| {r['family']} | {r['strategy']} | {r['k'] if r['family'] != 'ar' else '-'} | {r['passes']:.1f} | "
        f"{r['ms']:.1f} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} ± {r['rougeL_ci']:.2f} | "
        f"{r['nll']:.3f} | {r['nll_kind']} | {r['n']} |\n" for r in rows)


def figure(rows: list[dict]):
    """plotly: mean ROUGE-L vs mean forward passes per infill, one line per A3 strategy."""
    import plotly.graph_objects as go
    fig = go.Figure()
    for name, rs in series(rows):
        fig.add_trace(go.Scatter(x=[r["passes"] for r in rs], y=[r["rougeL"] for r in rs], name=name,
                                 mode="lines+markers", text=[f"k={r['k']}" for r in rs],
                                 line=dict(dash="dash" if rs[0]["family"] == "a3" else "solid")))
    fig.update_layout(title="Sentence infilling on held-out Austen: quality vs forward passes",
                      xaxis_title="forward passes per infill (mean)", yaxis_title="ROUGE-L F1 x 100",
                      template="plotly_white", width=900, height=560)
    return fig


def series(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """Plot series: each A3 strategy and the diffusion baseline over k, and the AR point."""
    out = []
    for fam, strat in [("a3", s) for s in STRATEGIES] + [("diffusion", "confidence"), ("ar", "left context")]:
        rs = sorted((r for r in rows if r["family"] == fam and r["strategy"] == strat), key=lambda r: r["passes"])
        if rs:
            out.append((f"A3 {strat}" if fam == "a3" else "diffusion (confidence)" if fam == "diffusion"
                        else "AR base (left context)", rs))
    return out


def write_png(fig, rows: list[dict], path: Path) -> str:
    """PNG through plotly (kaleido) when installed, else a plain PIL line chart of the same data."""
    try:
        fig.write_image(str(path))
        return "plotly/kaleido"
    except Exception:  # kaleido (and the browser it drives) is absent here: draw it by hand
        pass
    from PIL import Image, ImageDraw, ImageFont
    W, H, (l, r, t, b) = 900, 560, (70, 230, 40, 60)
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    pts = [(p["passes"], p["rougeL"]) for p in rows]
    x0, x1 = 0, max(x for x, _ in pts) * 1.05 or 1
    y0, y1 = min(y for _, y in pts) * 0.9, max(y for _, y in pts) * 1.05 or 1
    X = lambda x: l + (x - x0) / (x1 - x0) * (W - l - r)  # noqa: E731
    Y = lambda y: H - b - (y - y0) / ((y1 - y0) or 1) * (H - t - b)  # noqa: E731
    d.rectangle([l, t, W - r, H - b], outline="black")
    for i in range(6):
        xv, yv = x0 + i * (x1 - x0) / 5, y0 + i * (y1 - y0) / 5
        d.text((X(xv) - 10, H - b + 6), f"{xv:.0f}", fill="black", font=font)
        d.text((8, Y(yv) - 7), f"{yv:.1f}", fill="black", font=font)
    d.text((l, 12), "ROUGE-L vs forward passes per infill (held-out Austen)", fill="black", font=font)
    d.text((W // 2 - 90, H - 24), "forward passes per infill (mean)", fill="black", font=font)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#000000", "#7f7f7f"]
    for i, (name, rs) in enumerate(series(rows)):
        c = colors[i % len(colors)]
        xy = [(X(p["passes"]), Y(p["rougeL"])) for p in rs]
        if len(xy) > 1:
            d.line(xy, fill=c, width=3 if name.startswith("diffusion") else 2)
        for x, y in xy:
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=c)
        d.line([(W - r + 15, t + 12 + 20 * i), (W - r + 40, t + 12 + 20 * i)], fill=c, width=3)
        d.text((W - r + 46, t + 5 + 20 * i), name, fill="black", font=font)
    img.save(path)
    return "PIL (kaleido not installed)"


def write_report(args, windows: list[Window], systems: list[EvalSystem], records: list[dict], command: str) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(records, systems, len(windows))
    tokens = budget(args)
    fig = figure(rows)
    fig.write_html(str(out / "infill_rougeL_vs_passes.html"), include_plotlyjs="cdn")
    png_how = write_png(fig, rows, out / "infill_rougeL_vs_passes.png")
    lines = [
        "# Sentence infilling: A3 vs masked diffusion vs AR (held-out Austen)", "",
        "Generated by `python -m model.eval`; regenerate with:", "", f"    {command}", "",
        f"- windows: {len(windows)} five-sentence windows of data/austen/eval.txt (one paragraph each), middle "
        f"sentence blanked at its true token length (mean {statistics.mean(len(w.blank) for w in windows):.1f} "
        "tokens); protocol in model/evaluation/infilling.py's docstring",
        f"- seeds: windows shuffled with seed {args.seed}; A3 `random` order seed {args.seed}; diffusion ELBO "
        f"seed {args.seed} + window index, {args.elbo_samples} samples; all decoding greedy",
        f"- models: A3 `{args.a3}`, diffusion `{args.diffusion}`, AR base `{args.base}`; training tokens "
        f"recorded after stage 0: {json.dumps(tokens)}",
        f"- machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}; "
        f"PNG drawn by {png_how}", "",
        "ROUGE: F-measure x 100 (rouge-score, stemmer). NLL: nats per blanked token, summed over windows then "
        "divided by their tokens; the three kinds are different quantities (see the column).", "",
        table(rows), "## Verdict", "", *verdict(rows, records, len(windows), tokens), "",
        "![ROUGE-L vs forward passes](infill_rougeL_vs_passes.png)", "", "## Examples", ""]
    best = {f: max((r for r in rows if r["family"] == f), key=lambda r: r["rougeL"], default=None)
            for f in ("a3", "diffusion", "ar")}
    hyps = {(r["window"], r["system"]): r["hyp"] for r in records}
    for w in windows[:3]:
        lines += [f"**Window {w.index}**: {' '.join(w.sentences[:2])} [___] {' '.join(w.sentences[3:])}", "",
                  f"- original: {w.reference}"]
        lines += [f"- {b['system']}: {hyps.get((w.index, b['system']), '(not run)')}" for b in best.values() if b]
        lines.append("")
    path = out / "infill.md"
    path.write_text("\n".join(lines))
    return path


__all__ = ["NLL_KIND", "budget", "summarize", "paired", "verdict", "table", "figure", "series",
           "write_png", "write_report"]
