"""The candidate study's report: every ranking rule applied to the same recorded candidates.

    Study(records)                   the windows' pools, each candidate in the form core.candidates.rank reads
    choose(cands, rule, ...)         the candidate a rule picks: rank's first, the app's own ranking code
    compare(study, kind, n, ...)     per window: the rule's ROUGE-L, greedy's, the oracle's, the length
    tune_mix(study, ...)             mixture weights, fitted on one half of the windows, applied to the other
    write_report(records, args, grid, command)   OUT/fills-<model>.md and its plot

The rules are model/core/candidates.py's (`rank`, `RULES`, agreement, the fluent gate): the study
measures the code the app runs, on the scores the study recorded. Greedy is the pool's first member
(greedy left to right at the true length). Intervals are 95% normal intervals of the paired
per-window differences. Mixtures are cross-fitted: weights chosen on the even windows rank the odd
ones and vice versa, so no window is ranked by weights fitted on it.
"""
from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from model.core import candidates
from model.core.candidates import SHIPPED_LENGTH_RULE, SHIPPED_LENGTH_WEIGHTS, rank
from model.core.scoring import FillScores

LENGTH_POOLS = ("lengths", "signal")  # the pools where the model chooses the length
# fluent_mbr: the app's at a given length; fluent_right: the right-fit score under the fluency gate
REPORTED = ("story", "right", "fluent_right", "both_per_token", "fill_left_per_token", "mbr", "fluent_mbr")
HEAD_WEIGHTS = (0.5, 2.0, 8.0)  # the length head's log prior added to the grid rule, reported by default
GRID = {"right": (0, 0.5, 1), "both_per_token": (0, 1, 4, 16), "mbr": (0, 2, 8, 32), "prior": (0, 1, 3)}


@dataclass
class Recorded:
    """A recorded candidate as core.candidates.rank reads one (scores, fill_ids, length, values),
    with its record (ROUGE-L against the reference, passes)."""
    record: dict
    scores: FillScores
    fill_ids: list[int]
    length: int
    values: dict[str, float] = field(default_factory=dict)  # filled by rank

    @classmethod
    def of(cls, c: dict) -> Recorded:
        scores = FillScores(**{k: c[k] for k in FillScores.__dataclass_fields__})
        return cls(c, scores, c["fill_ids"], c["length"])


class Study:
    """The records of one report and each window's pools, built once: the same list object each
    time a pool is ranked, so its agreement is computed once (`agreements`)."""

    def __init__(self, records: list[dict]):
        self.records = records
        self._pools: dict[tuple[str, int], list[list[Recorded]]] = {}

    def pools(self, kind: str, n: int | None = None) -> list[list[Recorded]]:
        """Per window, its first n candidates of a kind (all of them for n None)."""
        if (kind, n) not in self._pools:
            self._pools[kind, n] = [[Recorded.of(c) for c in r["candidates"] if c["kind"] == kind][:n]
                                    for r in self.records]
        return self._pools[kind, n]

    def size(self, kind: str) -> int:
        return len(self.pools(kind)[0])


_AGREEMENTS: dict[int, tuple[list, list[float]]] = {}  # id(pool) -> (pool, its agreement)


def agreements(cands: list[Recorded]) -> list[float]:
    """core.candidates.agreement of a pool, computed once per pool object while a report is built
    (the weight grid ranks every pool ~150 times; agreement, an LCS per pair of fills, is the
    costly rule); rank takes the values as they are."""
    hit = _AGREEMENTS.get(id(cands))
    if hit is None or hit[0] is not cands:
        hit = _AGREEMENTS[id(cands)] = (cands, candidates.agreement(cands))
    return hit[1]


def _prior(lengths: list[int]):
    """log density of a log-normal fitted to reference lengths (a length prior)."""
    logs = [math.log(n) for n in lengths]
    mu, sd = statistics.mean(logs), statistics.pstdev(logs) or 1.0
    return lambda n: -((math.log(n) - mu) ** 2) / (2 * sd * sd) - math.log(n)


def choose(cands: list[Recorded], rule: str, weights: dict | None = None, prior=None) -> Recorded:
    """The candidate `rule` picks: core.candidates.rank's first. For "mix" and "fluent_mix",
    `weights` over the other rules; its "prior" entry weighs the log length prior `prior`."""
    kw = {"agreements": agreements(cands)}
    if weights is not None:
        kw["weights"] = {k: w for k, w in weights.items() if w and k != "prior"}
        if prior is not None:
            kw["length_prior"] = lambda n, w=weights.get("prior", 0): w * prior(n)
    return rank(cands, rule, **kw)[0]


def compare(study: Study, kind: str, n: int, rule: str, windows: list[int] | None = None,
            **kw) -> list[tuple[float, float, float, int, float]]:
    """Per window (all, or those at the indices `windows`): (chosen ROUGE-L, greedy-at-true-length
    ROUGE-L, oracle ROUGE-L, chosen length - true length, the chosen fill's log p given its left
    side per token: how fluent the model itself reads it)."""
    out = []
    pools, greedy = study.pools(kind, n), study.pools("orders", 1)
    head = kw.pop("head", False)  # the prior: each window's length head (its record's "head_prior"),
    for i in range(len(study.records)) if windows is None else windows:  # or "chosen": the app's length only
        if head == "chosen":  # core/length_head.choose_length's pick, recorded by fill_study
            kw["prior"] = lambda L, c=study.records[i]["head_length"]: 0.0 if L == c else -1e9
        elif head:
            kw["prior"] = lambda L, p=study.records[i]["head_prior"]: p[str(L)]
        c = choose(pools[i], rule, **kw).record
        out.append((c["rougeL"], greedy[i][0].record["rougeL"], max(x.record["rougeL"] for x in pools[i]),
                    c["length"] - study.records[i]["true_length"], c["fill_left"] / max(1, c["n_fill"])))
    return out


def tune_mix(study: Study, kind: str, n: int, lengths: bool) -> tuple[list[tuple], list[dict]]:
    """Cross-fitted mixture: per half, the grid weights with the best mean ROUGE-L on the other half.
    The rows are compare's, in window order; the weights are the even half's, then the odd half's."""
    keys = ["right", "both_per_token", "mbr"] + (["prior"] if lengths else [])
    halves = [[i for i, r in enumerate(study.records) if r["window"] % 2 == k] for k in (0, 1)]
    rows, chosen = [None] * len(study.records), []
    for fit, apply in ((halves[0], halves[1]), (halves[1], halves[0])):
        prior = _prior([study.records[i]["true_length"] for i in fit]) if lengths else None
        best = max((dict(zip(keys, ws)) for ws in itertools.product(*(GRID[k] for k in keys)) if any(ws)),
                   key=lambda w: statistics.mean(x[0] for x in compare(study, kind, n, "mix", fit, weights=w, prior=prior)))
        chosen.append(best)
        for i, row in zip(apply, compare(study, kind, n, "mix", apply, weights=best, prior=prior)):
            rows[i] = row  # in window order, as table_rows pairs them with the records
    return rows, chosen


def summary(rows: list[tuple], records: list[dict] | None = None) -> dict:
    """Means, the paired interval and the length errors of compare's rows; with their records, the
    share of windows whose chosen length is within 25% of the true one."""
    d = [a - b for a, b, *_ in rows]
    ci = 1.96 * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    err = sorted(e for _, _, _, e, _ in rows)
    q = lambda p: err[min(len(err) - 1, int(p * len(err)))]  # noqa: E731
    return {"rougeL": statistics.mean(a for a, *_ in rows), "greedy": statistics.mean(b for _, b, *_ in rows),
            "diff": statistics.mean(d), "ci": ci, "oracle": statistics.mean(o for _, _, o, *_ in rows),
            "fluency": statistics.mean(f for *_, f in rows),
            "len_err": (q(0.1), q(0.5), q(0.9)), "len_exact": sum(e == 0 for e in err) / len(err),
            "len_within_25": None if records is None else
            sum(abs(r[3]) <= 0.25 * rec["true_length"] for r, rec in zip(rows, records)) / len(rows)}


def table_rows(records: list[dict]) -> list[dict]:
    study, out = Study(records), []
    _AGREEMENTS.clear()
    ran = {c["kind"] for c in records[0]["candidates"]}  # signal: a checkpoint with a length signal
    kinds = [k for k in [("orders", (4, 8), False), ("samples", (4, 8), False), ("lengths", (None,), True),
                         ("signal", (None,), True)] if k[0] in ran]
    for kind, ns, lengths in kinds:
        ns = tuple(n for n in ns if n is None or n <= study.size(kind)) or (study.size(kind),)  # greedy alone: N = 1
        for n in ns:
            N = n or study.size(kind)
            fixed = ("mix", SHIPPED_LENGTH_RULE) if kind == "lengths" else ()  # the app's grid weights, without / with its gate
            rules = ("greedy",) * (kind != "lengths") + REPORTED + ("mix",) * (kind != "signal")
            for rule in rules + tuple(f"fixed {r}" for r in fixed):
                if rule == "mix":
                    rows, w = tune_mix(study, kind, N, lengths)
                    name = "mix (cross-fitted: " + " / ".join(json.dumps({k: v for k, v in x.items() if v}) for x in w) + ")"
                elif rule.startswith("fixed "):  # no prior, nothing fitted here
                    rows = compare(study, kind, N, rule[6:], weights=SHIPPED_LENGTH_WEIGHTS)
                    name = f"{rule[6:]} (fixed weights: {json.dumps(SHIPPED_LENGTH_WEIGHTS)})" + \
                        (" = the app's without a length head" if rule[6:] == SHIPPED_LENGTH_RULE else "")
                else:
                    rows, name = compare(study, kind, N, rule), rule
                s = summary(rows, records)
                full = N == study.size(kind)  # timed: the whole pool's batch only
                secs = statistics.mean(r["seconds"][kind] for r in records) if full else None
                passes = statistics.mean(max(c.record["passes"] for c in cands) for cands in study.pools(kind, N))
                out.append({"pool": kind, "n": N, "rule": name, **s, "ms": secs and 1000 * secs, "passes": passes})
    return out


def head_rows(records: list[dict], head_weights: list[float]) -> list[dict]:
    """The lengths pool ranked with the length head's prior (records carry "head_prior", written by
    fill_study from the checkpoint's length_head.safetensors): the grid length nearest the head's
    median (the app's), the one it gives the most mass (alone, and among the fluent candidates
    first), greedy left to right there, and the grid rule plus w x log p_head(L), per w."""
    study, out = Study(records), []
    _AGREEMENTS.clear()
    N = study.size("lengths")
    shipped = SHIPPED_LENGTH_WEIGHTS
    grid = compare(study, "lengths", N, SHIPPED_LENGTH_RULE, weights=shipped)  # the app's rule without a head
    for name, rule, w, how in [("length head: the grid length nearest its median = the app's, with a length head "
                                "(core/length_head.choose_length)", "mix", {"prior": 1.0}, "chosen"),
                               ("length head alone: the grid length with the most mass", "mix", {"prior": 1.0}, True),
                               ("length head alone, fluent fills first", "fluent_mix", {"prior": 1.0}, True)] + [
            (f"{SHIPPED_LENGTH_RULE} + {x:g} x log p_head(L)", SHIPPED_LENGTH_RULE, {**shipped, "prior": x}, True)
            for x in head_weights]:
        rows = compare(study, "lengths", N, rule, weights=w, head=how)
        d = [a[0] - b[0] for a, b in zip(rows, grid)]  # paired against the grid rule, window by window
        name += f" (vs the grid rule: {statistics.mean(d):+.2f} ± {1.96 * statistics.stdev(d) / math.sqrt(len(d)):.2f})"
        s = summary(rows, records)
        passes = statistics.mean(max(c.record["passes"] for c in cands) for cands in study.pools("lengths", N))
        out.append({"pool": "lengths", "n": N, "rule": name, **s, "ms": None, "passes": passes})
    return out


def write_report(records: list[dict], args, grid: list[int], command: str) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.model.rstrip("/")).name
    rows = table_rows(records)
    head = bool(records) and "head_prior" in records[0] and any(c["kind"] == "lengths" for c in records[0]["candidates"])
    if head:
        rows += head_rows(records, list(getattr(args, "head_weights", None) or HEAD_WEIGHTS))
    lines = [f"# Candidates and ranking rules: `{name}` on {len(records)} held-out windows", "",
             f"Generated by `{command}` (model/evaluation/fill_study.py; the rules: model/evaluation/fills_report.py).", "",
             f"- windows: model.eval's sentence-infilling windows (held-out Austen, middle sentence blanked), "
             f"made with the model's tokenizer; mean true length {statistics.mean(r['true_length'] for r in records):.1f} tokens",
             f"- unknown length: lengths {grid} (1 to 2x the mean reference length); greedy left to right and "
             "outside-in (groups of 4) at each",
             f"- signal (a checkpoint with a learned length signal): one blank of {max(grid)} slots at most, the first "
             "4 members of the orders pool, each fill ending where the model writes its empty token; greedy = its "
             "left-to-right member",
             "- greedy: the left-to-right greedy fill at the true length; diff: the rule's pick minus greedy, ROUGE-L x 100, "
             "with its 95% interval (paired); oracle: the best candidate by ROUGE-L (an upper bound no rule can see)",
             "- time: mean wall seconds of the pool's one batched decode plus its scoring (all 8 members or all lengths), "
             "one CPU thread; passes: walks of the longest member",
             "- fluency: the picked fill's log p given its left side, nats per token (the model reading it left to right; "
             "greedy left to right is the most fluent by construction)"] + (
             ["- length head (the checkpoint's length_head.safetensors, core/length_head.py): its log p(L) at the "
              "grid's lengths, from the story around the blank; nearest its median / the most mass: that grid "
              "length, greedy left to right there; + w: w x log p_head(L) added to the grid rule"] if head else []) + ["",
             "| pool | N | rule | ROUGE-L | diff vs greedy (95%) | oracle | fluency | length error p10 / p50 / p90 | within 25% | ms / infill | passes |",
             "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        le = "–" if r["pool"] not in LENGTH_POOLS else "{} / {} / {}".format(*r["len_err"])
        within = "–" if r["pool"] not in LENGTH_POOLS else f"{100 * r['len_within_25']:.0f}%"
        lines.append(f"| {r['pool']} | {r['n']} | {r['rule']} | {r['rougeL']:.2f} | {r['diff']:+.2f} ± {r['ci']:.2f} | "
                     f"{r['oracle']:.2f} | {r['fluency']:.2f} | {le} | {within} | {'–' if r['ms'] is None else round(r['ms'])} | {r['passes']:.1f} |")
    path = out / f"fills-{name}.md"
    path.write_text("\n".join(lines) + "\n")
    (out / f"fills-{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    return path


def plot(tables: dict[str, list[dict]], path: Path, rules: tuple[str, ...] = ("story", "right", "both_per_token", "mbr", "fluent_mbr")) -> Path:
    """PNG: each rule's ROUGE-L gain over greedy with its 95% interval, per model, pool and N (PIL)."""
    from PIL import Image, ImageDraw, ImageFont
    items = [(m, r) for m, rows in tables.items() for r in rows
             if r["rule"] in rules or r["rule"].startswith(("mix", "fluent_mix"))]
    W, row_h, left, right_pad = 900, 19, 230, 30
    H = 70 + row_h * len(items) + 20 * len(tables)
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=12)
    lo = min(min(r["diff"] - r["ci"] for _, r in items), -1.0)
    hi = max(max(r["diff"] + r["ci"] for _, r in items), 1.0) + 0.5
    X = lambda v: left + (v - lo) / (hi - lo) * (W - left - right_pad)  # noqa: E731
    d.text((10, 8), "ROUGE-L gain over greedy (x 100), 95% interval; pools of N candidates; "
                    "'lengths': the true length hidden", fill="black", font=font)
    y = 40
    for i in range(int(lo), int(hi) + 1):
        d.line([(X(i), 34), (X(i), H - 10)], fill="#e5e7eb" if i else "#6b7280")
        d.text((X(i) - 4, H - 24), str(i), fill="#6b7280", font=font)
    colors = {"orders": "#4f46e5", "samples": "#db2777", "lengths": "#059669", "signal": "#d97706"}
    for model, rows in tables.items():
        d.text((10, y), model, fill="black", font=font)
        y += 20
        for m, r in items:
            if m != model:
                continue
            rule = r["rule"].split(" (")[0] + (" (fixed)" if "fixed" in r["rule"] else " (tuned)" if "cross" in r["rule"] else "")
            label = f"{r['pool']} N={r['n']}: {rule}"
            c = colors.get(r["pool"], "black")
            d.text((20, y), label, fill=c, font=font)
            d.line([(X(r["diff"] - r["ci"]), y + 7), (X(r["diff"] + r["ci"]), y + 7)], fill=c, width=2)
            d.ellipse([X(r["diff"]) - 4, y + 3, X(r["diff"]) + 4, y + 11], fill=c)
            y += row_h
    img.save(path)
    return path
