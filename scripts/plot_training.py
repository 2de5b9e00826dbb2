"""Loss curves of a training run (metrics.jsonl from model.train) as a PNG and a markdown table.

    python scripts/plot_training.py runs/a3-austen-tiny assets/a3-austen-tiny/loss.png
    python scripts/plot_training.py runs/a3-infill-long assets/a3-austen-tiny/loss.png --stage0-from runs/a3-austen-tiny

`--stage0-from` is for a run that started from an existing base (`base_model` in its config): the
base run's stage-0 records are put in front, and the run's tokens and seconds are shifted by them.
A (stage, step) logged twice (a restart that repeated steps) keeps its last record.

The PNG is drawn with PIL (plotly's PNG export needs kaleido and a browser); the table lists
every held-out evaluation. Prints the table to stdout for the model card.
"""
import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = ["#4338ca", "#db2777", "#059669", "#d97706", "#0891b2", "#7c3aed", "#dc2626", "#65a30d"]


def read(run: Path) -> list[dict]:
    """The run's records in order, one per (stage, step, kind): a repeated one keeps its last value."""
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    keyed = {(r["stage"], r["step"], "eval" in r): r for r in recs}
    return sorted(keyed.values(), key=lambda r: (r["tokens"], "eval" in r))


def with_stage0(recs: list[dict], base_run: Path) -> list[dict]:
    """recs (a run that started from a trained base) preceded by base_run's stage-0 records."""
    s0 = [r for r in read(base_run) if r["stage"].startswith("0")]
    if not s0:
        raise SystemExit(f"error: {base_run}/metrics.jsonl has no stage-0 records")
    tok, sec = max(r["tokens"] for r in s0), max(r["elapsed"] for r in s0)
    return s0 + [{**r, "tokens": r["tokens"] + tok, "elapsed": r["elapsed"] + sec} for r in recs]


def curves(recs: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Training loss per stage against tokens seen (smoothed over 20 steps)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for r in recs:
        if "loss" in r:
            out.setdefault(r["stage"], []).append((r["tokens"], r["loss"]))
    for k, pts in out.items():
        sm = []
        for i in range(len(pts)):
            win = pts[max(0, i - 19):i + 1]
            sm.append((pts[i][0], sum(p[1] for p in win) / len(win)))
        out[k] = sm
    return out


def draw(series: dict[str, list[tuple[int, float]]], path: Path, w: int = 900, h: int = 460) -> None:
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    pad_l, pad_r, pad_t, pad_b = 60, 200, 30, 50
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)

    def px(x, y):
        return (pad_l + (x - x0) / max(1, x1 - x0) * (w - pad_l - pad_r),
                h - pad_b - (y - y0) / max(1e-9, y1 - y0) * (h - pad_t - pad_b))

    d.rectangle([pad_l, pad_t, w - pad_r, h - pad_b], outline="#999")
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        _, yy = px(x0, y)
        d.text((8, yy - 6), f"{y:.2f}", fill="#333")
    d.text((pad_l, h - pad_b + 10), "0", fill="#333")
    d.text((w - pad_r - 60, h - pad_b + 10), f"{x1 / 1e6:.2f}M tokens", fill="#333")
    d.text((pad_l, 8), "training loss (nats/token, 20-step mean) vs tokens seen", fill="#111")
    for i, (name, pts) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        d.line([px(x, y) for x, y in pts], fill=c, width=2)
        d.text((w - pad_r + 10, pad_t + 18 * i), name, fill=c)
    img.save(path)


def table(recs: list[dict]) -> str:
    rows = ["| stage | step | tokens | elapsed (s) | held-out NLL (stage grouping) | held-out NLL (left-to-right) |",
            "|---|---|---|---|---|---|"]
    for r in recs:
        if "eval" in r:
            ev = r["eval"]
            first = ev.get("nll", ev.get("nll_bound"))
            ar = f"{ev['nll_ar']:.3f}" if "nll_ar" in ev else "–"
            rows.append(f"| {r['stage']} | {r['step']} | {r['tokens']:,} | {r['elapsed']:.0f} | {first:.3f} | {ar} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description="Plot a run's loss curves and print its evaluation table.")
    p.add_argument("run", type=Path, help="training output dir holding metrics.jsonl")
    p.add_argument("png", type=Path, help="where to write the PNG")
    p.add_argument("--stage0-from", type=Path, help="a run whose stage-0 records go first (RUN started from its base)")
    a = p.parse_args()
    recs = read(a.run)
    if a.stage0_from:
        recs = with_stage0(recs, a.stage0_from)
    draw(curves(recs), a.png)
    print(table(recs))


if __name__ == "__main__":
    main()
