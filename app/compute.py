"""The one call that touches a model, and the engine that shares it between users.

    execute(settings, enc, cfg, entry)                   -> a run record (run_file.py), fills included
    execute_candidates(settings, enc, cfg, entry, plan)  -> the winner's record, with the ranked candidates

Every request becomes a job of rows (a story and a decode config each). The engine runs one job
batch at a time: whoever finds it idle waits a moment for company, then decodes the oldest jobs on
the same model together in one `run_batch` (core/decode.py: one walk per step for every row), so
users who press Fill together share the walks instead of queueing behind one another. The batch
call, `compute_rows`, is wrapped with `spaces.GPU` when the `spaces` package is importable
(ZeroGPU), so a batch holds the GPU for one short call; the UI then animates the recorded steps on
the CPU. A small model decodes on one CPU thread (model_menu.cpu_threads). Decoding, scoring and
ranking are the core's (decode, scoring, candidates): nothing here samples or scores by itself.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import torch

from model.core.candidates import Candidate, rank
from model.core.decode import DecodeConfig, run_batch
from model.core.scoring import score_blanks, score_fills

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


def _compute_rows(key: str, rows: list[tuple], cfgs: list[DecodeConfig], kinds: list[str]):
    """Decode every row (ids, blank_mask, spans) in one batch and score each: kind "run" gets the
    exact log p of its blanks given the visible text (one blank token at a time, the same scale for
    every order), kind "candidate" its FillScores. Returns (traces, scores, seconds)."""
    model, tok = model_menu.load(key)
    threads = model_menu.cpu_threads(model)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        traces = run_batch(model, [(r[0], r[1]) for r in rows], cfgs, tok, [r[2] for r in rows])
        cand = [i for i, k in enumerate(kinds) if k == "candidate"]
        scores_at = dict(zip(cand, score_fills(model, [(traces[i].output_ids, traces[i].blank_mask) for i in cand])))
        layouts: dict[tuple, list[int]] = {}  # "run" rows that share a blank layout are scored in one forward
        for i, t in enumerate(traces):
            if i not in scores_at:
                layouts.setdefault(tuple(torch.as_tensor(t.blank_mask, dtype=torch.bool).tolist()), []).append(i)
        for mask, idx in layouts.items():
            ids = torch.stack([torch.as_tensor(traces[i].output_ids, dtype=torch.long) for i in idx])  # (R, T)
            lp = score_blanks(model, ids, torch.tensor(mask)).reshape(len(idx), -1).sum(-1)  # (R,)
            scores_at.update({i: float(v) for i, v in zip(idx, lp)})
        scores = [scores_at[i] for i in range(len(traces))]
        return traces, scores, time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)


compute_rows = spaces.GPU(duration=_duration)(_compute_rows) if spaces is not None else _compute_rows


@dataclass
class Job:
    key: str
    rows: list[tuple]  # (ids, blank_mask, spans)
    cfgs: list[DecodeConfig]
    kinds: list[str]  # "run" or "candidate", per row
    result: tuple | None = None
    error: BaseException | None = None
    done: bool = False
    waited: float = field(default_factory=time.perf_counter)


class Engine:
    """One batch at a time; concurrent jobs on the same model are decoded together."""

    def __init__(self):
        self.cond = threading.Condition()
        self.queue: list[Job] = []
        self.busy = False

    def submit(self, job: Job):
        """Queue a job and return its (traces, scores, seconds) once some thread has run it: while
        the job waits and the engine is idle, this thread runs the next batch itself."""
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


ENGINE = Engine()


def execute(settings: dict, enc, cfg: DecodeConfig, entry: dict) -> dict:
    """Compute a checked request (request.prepare_run) and return its run record."""
    t0 = time.perf_counter()
    traces, scores, _ = ENGINE.submit(Job(entry["key"], [(enc.input_ids, enc.blank_mask, enc.blank_spans)],
                                          [cfg], ["run"]))
    _, tok = model_menu.load(entry["key"])
    return run_file.make_record(entry, settings, enc, traces[0], scores[0], time.perf_counter() - t0, tok)


def execute_candidates(settings: dict, plan, entry: dict) -> dict:
    """Decode a candidate plan (request.CandidatePlan: one request per blank length, the pool's
    configs) in one job, rank by the plan's rule, and return the winner's record with the ranked
    candidates (each a record of its own, for showing and for putting into the story)."""
    t0 = time.perf_counter()
    rows = [(r.enc.input_ids, r.enc.blank_mask, r.enc.blank_spans) for r in plan.requests for _ in plan.configs]
    cfgs = [c for _ in plan.requests for _, c in plan.configs]
    traces, scores, _ = ENGINE.submit(Job(entry["key"], rows, cfgs, ["candidate"] * len(rows)))
    _, tok = model_menu.load(entry["key"])
    multi = len(plan.requests) > 1
    cands, encs = [], []
    for i, (t, s) in enumerate(zip(traces, scores)):
        req, (label, _) = plan.requests[i // len(plan.configs)], plan.configs[i % len(plan.configs)]
        cands.append(Candidate(f"{label}{f', {req.length} tokens' if multi else ''}", t, s, req.length))
        encs.append(req.enc)
    ranked = rank(cands, plan.rule, **({"weights": plan.weights} if plan.weights else {}))
    total = time.perf_counter() - t0
    records = []
    for c in ranked:
        i = cands.index(c)
        cfg = cfgs[i]
        own = {**settings, "strategy": cfg.strategy, "group_size": cfg.group_size,
               "temperature": cfg.sampling.temperature if cfg.sampling.do_sample else 0.0, "seed": cfg.sampling.seed,
               "threshold": cfg.threshold}
        rec = run_file.make_record(entry, own, encs[i], c.trace, c.scores.both, total, tok)
        records.append({"label": c.label, "length": c.length, "value": c.values[plan.rule],
                        "story": c.scores.story, "right": c.scores.right, "both": c.scores.both, "record": rec})
    winner = dict(records[0]["record"])
    winner["candidates"] = records
    winner["ranking"] = {"rule": plan.rule, "pool": plan.pool, "n": len(plan.configs), "lengths": plan.lengths,
                         "note": plan.note}
    return winner
