"""The right-side recipe study's table, from its runs' per-domain reports.

    python scripts/study_table.py ~/.cache/a3-studio/runs --out docs/right-side-study.md

Reads RUNS/rs-<recipe>/domains/domains.json (written by scripts/study_worker.sh) and
RUNS/rs-<recipe>/metrics.jsonl (tokens, seconds), plus RUNS/rs-<name>-domains for checkpoints
measured the same way outside the study (REFERENCES), and writes one row per recipe: the right side's gain over all span tokens and over the
last two (Brown, Austen) and Brown left to right against SmolLM2 (forgetting).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


# measured checkpoints that are not study runs (RUNS/rs-<name>-domains/domains.json)
REFERENCES = {"rs-shipped-domains": "shipped a3-smollm2-mix (the start)",
              "rs-lora-h100-domains": "a3-smollm2-lora (Austen only, 9.8M tokens on one H100)"}


def row(name: str, dom: Path, metrics: Path | None) -> dict | None:
    if not (dom / "domains.json").is_file():
        return None
    res = json.loads((dom / "domains.json").read_text())
    model = next(k for k in res["austen"] if k != "base")
    b, a = res["brown (all genres)"], res["austen"]
    out = {"recipe": name, "brown": b[model]["right_gain"], "brown_last2": b[model]["right_gain_last2"],
           "austen": a[model]["right_gain"], "austen_last2": a[model]["right_gain_last2"],
           "brown_l2r": b[model]["a3_ar"] / b["base"]["base_ar"] - 1, "tokens": 0, "seconds": 0.0}
    if metrics is not None and metrics.is_file():
        last = [json.loads(x) for x in metrics.read_text().splitlines()][-1]
        out["tokens"], out["seconds"] = last["tokens"], last["elapsed"]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", help="the folder holding rs-<recipe>/ runs")
    p.add_argument("--out", help="write the markdown table here")
    a = p.parse_args(argv)
    runs = Path(a.runs).expanduser()
    refs = [row(REFERENCES.get(d.name, d.name), d, None) for d in sorted(runs.glob("rs-*-domains"))]
    rows = [r for r in refs + [row(d.name[3:], d / "domains", d / "metrics.jsonl") for d in sorted(runs.glob("rs-*"))
                               if not d.name.endswith("-domains")] if r]
    lines = ["| recipe | Brown: right-side gain, all / last 2 | Austen: all / last 2 | Brown L2R vs SmolLM2 | tokens | minutes |",
             "|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['brown']:+.1%} / {r['brown_last2']:+.1%} | {r['austen']:+.1%} / "
                     f"{r['austen_last2']:+.1%} | {r['brown_l2r']:+.1%} | {r['tokens'] or '–'} | "
                     f"{round(r['seconds'] / 60) if r['seconds'] else '–'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
