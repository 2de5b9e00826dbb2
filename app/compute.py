"""The one call that touches a model, and the engine that shares it between users.

    execute(run)                 -> a run record (run_file.py), fills included
    execute_candidates(run, plan) -> the winner's record, with the ranked candidates

Every request becomes a job of rows (a story and a decode config each) for `compute_rows`, which
decodes them in one `run_batch` (core/decode.py: one walk per step for every row) and scores them
(core/scoring.py). Where the rows come from depends on the machine:
- on a CPU (or a GPU of its own), the engine runs one job batch at a time: whoever finds it idle
  waits a moment for company, then decodes the oldest jobs on the same model together, so users
  who press Fill together share the walks instead of queueing behind one another;
- on ZeroGPU, `compute_rows` is wrapped with `spaces.GPU`, and each job is its own call, made from
  its user's request: ZeroGPU bills a call to the user whose request makes it, so one user's run
  never runs inside (nor is billed to, nor fails with) another user's GPU call. A job's own rows
  (the candidates of one story) still share one call. The UI then animates the recorded steps on
  the CPU.
A blank whose length the model ends with its learned signal (a config with `slack`) is decoded as
it happened, in slot coordinates (run_batch(compact_slack=False): the animation shows its slots
closing), and scored, assembled and ranked as the story as filled (`as_filled`,
core/chosen_length.compact): no score ever sees the empty token.
A small model decodes on one CPU thread, a large one on every core (model_menu.cpu_threads).
Decoding, scoring, candidate assembly and ranking are the core's (decode, scoring, candidates):
nothing here samples or scores by itself.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace

import torch

from model.core.candidates import (SHIPPED_RULE, candidate_batch, candidates_of, needs_both, needs_right, rank,
                                   runs_both)
from model.core.chosen_length import SlackBlank, compact, length_signal
from model.core.decode import DecodeConfig, run_batch
from model.core.length_head import choose_length, length_features, length_head
from model.core.scoring import blanks_logp, score_fills, scored_by_its_run
from model.core.trace import Trace

from . import model_menu, run_file

try:  # ZeroGPU: hold a GPU for the compute call only
    import spaces
except ImportError:
    spaces = None

WINDOW_S = 0.02  # how long an idle engine waits for other users' runs to join a batch
MAX_ROWS = 32  # rows per batch (candidates of one story count one row each)


def _duration(key, rows, cfgs, kinds) -> int:
    """Seconds of GPU to ask ZeroGPU for: generous for the blank tokens at hand, short for priority."""
    return int(min(120, 15 + 0.02 * sum(sum(map(bool, r[1])) for r in rows)))


def as_filled(trace: Trace, cfg: DecodeConfig, empty_id: int | None) -> Trace:
    """The story as filled: a row whose blank the model ended (cfg.slack) without its empty slots
    (chosen_length.compact, with Trace.chosen); any other row as it is."""
    if cfg.slack is None:
        return trace
    first, slots, least = cfg.slack
    return compact(trace, SlackBlank(first, slots, empty_id, least))


def _compute_rows(key: str, rows: list[tuple], cfgs: list[DecodeConfig | None], kinds: list[str]):
    """Decode every row (ids, blank_mask, spans) in one batch and score each: kind "run" gets the
    exact log p of its blanks given the visible text (scoring.blanks_logp: the same scale for every
    order), kind "candidate" its FillScores, kind "ranked" on a CPU only the FillScores its rule
    reads (score_fills(right=False, both=False): fill_left, the walk over the blanks alone; both
    where the run scored itself, candidates.runs_both; a GPU scores everything anyway), kind "score"
    (a filled row, cfg None: not decoded, no trace) its blanks_logp, the shown candidate's `both`;
    kind "length" (cfg None, not decoded; its spans list the blank whose length the model chooses
    first) the length head's features of the story around that blank (core/length_head.py).
    A row the model ends itself comes back as decoded (its slots and their closing) and is scored
    as filled (`as_filled`). Returns (traces, scores, seconds)."""
    model, tok = model_menu.load(key)
    threads = model_menu.cpu_threads(model)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        todo = [i for i, k in enumerate(kinds) if k not in ("score", "length")]
        decoded = run_batch(model, [(rows[i][0], rows[i][1]) for i in todo], [cfgs[i] for i in todo], tok,
                            [rows[i][2] for i in todo], compact_slack=False) if todo else []
        traces: list[Trace | None] = [None] * len(rows)
        for i, t in zip(todo, decoded):
            traces[i] = t
        empty_id = length_signal(model).get("empty_id")
        filled = [(r[0], r[1]) for r in rows]  # a "score" row as given; a decoded one as filled
        for i, (t, c) in enumerate(zip(traces, cfgs)):
            if t is not None:
                f = as_filled(t, c, empty_id)
                filled[i] = (f.output_ids, f.blank_mask)
        scores = [None] * len(rows)
        for i, (k, t, c) in enumerate(zip(kinds, traces, cfgs)):  # a left-to-right run scored itself
            if k == "run" and scored_by_its_run(c, t):
                scores[i] = t.log_likelihood
        cpu = model.device.type == "cpu"
        for kind, score in (("run", blanks_logp), ("score", blanks_logp), ("candidate", score_fills),
                            ("ranked", lambda m, r: score_fills(m, r, right=not cpu, both=not cpu))):
            idx = [i for i, k in enumerate(kinds) if k == kind and scores[i] is None]
            for i, s in zip(idx, score(model, [filled[i] for i in idx]) if idx else []):
                scores[i] = s
        asked = [i for i, k in enumerate(kinds) if k == "length"]  # the length head's features (1, F) each
        for i, f in zip(asked, length_features(model, [(rows[i][0], rows[i][2][0], [p for s in rows[i][2][1:] for p in s])
                                                       for i in asked]) if asked else []):
            scores[i] = f[None]
        ranked = [i for i, k in enumerate(kinds) if k == "ranked"]  # both from the run where it is exact
        for i, s in zip(ranked, runs_both([scores[i] for i in ranked], [traces[i] for i in ranked],
                                          [cfgs[i] for i in ranked])):
            scores[i] = s
        return traces, scores, time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)


compute_rows = spaces.GPU(duration=_duration)(_compute_rows) if spaces is not None else _compute_rows


@dataclass
class Job:
    key: str
    rows: list[tuple]  # (ids, blank_mask, spans)
    cfgs: list[DecodeConfig]
    kinds: list[str]  # "run", "candidate", "ranked" or "score" (_compute_rows), per row
    result: tuple | None = None
    error: BaseException | None = None
    done: bool = False
    waited: float = field(default_factory=time.perf_counter)


class Engine:
    """One batch at a time; concurrent jobs on the same model are decoded together (share=True),
    or each job in its own call from its own thread (share=False: ZeroGPU)."""

    def __init__(self, share: bool = True):
        self.share = share
        self.cond = threading.Condition()
        self.queue: list[Job] = []
        self.busy = False

    def submit(self, job: Job):
        """Return a job's (traces, scores, seconds). Shared: queue it; while it waits and the engine
        is idle, this thread runs the next batch itself. Not shared: this thread computes the job
        alone, in a call of its own."""
        if not self.share:
            return compute_rows(job.key, job.rows, job.cfgs, job.kinds)
        with self.cond:
            self.queue.append(job)
        while True:
            with self.cond:
                while not job.done and self.busy:
                    self.cond.wait()
                if job.done:
                    return self._result(job)
                self.busy = True
            try:
                self._run_one_batch()
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    @staticmethod
    def _result(job: Job):
        if job.error is not None:
            raise job.error
        return job.result

    def _run_one_batch(self) -> None:
        with self.cond:
            alone = len(self.queue) == 1
        if alone:
            time.sleep(WINDOW_S)  # let runs that arrive together share the walks
        with self.cond:
            key, batch, n = self.queue[0].key, [], 0
            for job in list(self.queue):
                if job.key == key and (not batch or n + len(job.rows) <= MAX_ROWS):
                    batch.append(job)
                    n += len(job.rows)
                    self.queue.remove(job)
        rows = [r for j in batch for r in j.rows]
        try:
            traces, scores, secs = compute_rows(key, rows, [c for j in batch for c in j.cfgs],
                                                [k for j in batch for k in j.kinds])
            i = 0
            for j in batch:
                m = len(j.rows)
                j.result = (traces[i:i + m], scores[i:i + m], secs)
                i += m
        except Exception as e:  # noqa: BLE001 -- each waiting user gets the error, the engine goes on
            for j in batch:
                j.error = e
        with self.cond:
            for j in batch:
                j.done = True
            self.cond.notify_all()


ENGINE = Engine(share=not model_menu.zero_gpu())


def execute(run) -> dict:
    """Compute a prepared run (request.PreparedRun) and return its run record."""
    t0, enc = time.perf_counter(), run.enc
    traces, scores, _ = ENGINE.submit(Job(run.model["key"], [(enc.input_ids, enc.blank_mask, enc.blank_spans)],
                                          [run.cfg], ["run"]))
    return run_file.make_record(run.model, run.request.settings, enc, traces[0], scores[0],
                                time.perf_counter() - t0, run.tokenizer)


def _both(key: str, filled: Trace) -> float:
    """log p of a filled story's blanks given both sides (scoring.blanks_logp), as a job of kind "score"."""
    _, got, _ = ENGINE.submit(Job(key, [(filled.output_ids, filled.blank_mask, None)], [None], ["score"]))
    return got[0]


def score_shown(key: str, rec: dict) -> float:
    """The exact log p of a record's fill given both sides (its "left-to-right" log p, of the story
    as filled), for a candidate a CPU ranking did not score so (execute_candidates: the rule does
    not read it) when the user shows it."""
    return _both(key, run_file.trace_of(rec))


def execute_candidates(run, plan) -> dict:
    """Decode a candidate plan (candidate_plan.CandidatePlan: one request per blank length, or one
    of M slots the model ends itself, and the pool's configs) in one job, rank by the plan's rule
    (a grid plan on a model with a length head: only the length the head chooses, `_head_length`),
    and return the winner's record with the ranked candidates (each a record of its own, for
    showing and for putting into the story). Every record holds the request as the user made it
    (`settings`); the label says who made each fill. Candidates are ranked as filled; each record
    keeps its run as decoded (run_file.make_record's `chosen`: the slots the animation closes)."""
    t0 = time.perf_counter()
    belief = None
    head = length_head(model_menu.load(run.model["key"])[0]) if plan.chosen is not None else None
    if head is not None:  # the head picks the length first: the grid's other lengths are never decoded,
        belief = _head_length(run.model["key"], head, plan)  # and its candidates rank as at a given length
        keep = [r for r in plan.requests if r.length == belief["length"]]
        plan = replace(plan, requests=keep, rule=SHIPPED_RULE, weights=None)
    requests = [r.request for r in plan.requests]
    rows, cfgs = candidate_batch(requests, plan.configs)
    full = needs_right(plan.rule, plan.weights) or needs_both(plan.rule, plan.weights)
    raw, scores, _ = ENGINE.submit(Job(run.model["key"], rows, cfgs, ["candidate" if full else "ranked"] * len(rows)))
    slack = plan.slack
    filled = [as_filled(t, c, slack and slack["empty_id"]) for t, c in zip(raw, cfgs)]
    cands = candidates_of(requests, plan.configs, filled, scores)
    ranked = rank(cands, plan.rule, **({"weights": plan.weights} if plan.weights else {}))
    best = ranked[0]
    if best.scores.both is None:  # scored for its rule only (a CPU): the shown fill given both sides
        best.scores = replace(best.scores, both=_both(run.model["key"], best.trace))
    total, records, at = time.perf_counter() - t0, [], {id(c): i for i, c in enumerate(cands)}
    for c in ranked:
        i = at[id(c)]
        enc = plan.requests[i // len(plan.configs)].enc
        rec = run_file.make_record(run.model, run.request.settings, enc, raw[i], c.scores.both, total, run.tokenizer,
                                   chosen=slack)
        records.append({"label": c.label, "length": c.length, "value": c.values[plan.rule],
                        "story": c.scores.story, "right": c.scores.right, "both": c.scores.both, "record": rec})
    winner = dict(records[0]["record"])
    winner["candidates"] = records
    winner["ranking"] = {"rule": plan.rule, "pool": plan.pool, "n": len(plan.configs), "lengths": plan.lengths,
                         "note": plan.note}
    if slack:
        winner["ranking"]["slots"] = slack["slots"]
    if belief is not None:  # how sure the head is: its median, its central half, p(chosen) over the grid
        winner["ranking"]["length_head"] = {"median": belief["median"], "low": belief["low"], "high": belief["high"],
                                            "p_chosen": belief["p"][belief["length"]], "weighed": sorted(belief["p"])}
    return winner


def _head_length(key: str, head, plan) -> dict:
    """core.length_head.choose_length over the plan's grid, from the story around the chosen blank
    (the length head's features, a job of kind "length")."""
    enc = plan.requests[0].enc
    spans = [enc.blank_spans[plan.chosen]] + [sp for j, sp in enumerate(enc.blank_spans) if j != plan.chosen]
    _, got, _ = ENGINE.submit(Job(key, [(enc.input_ids, enc.blank_mask, spans)], [None], ["length"]))
    return choose_length(head, got[0], plan.lengths)
