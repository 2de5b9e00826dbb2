"""The run's events: Fill (check, frame 0 at once, compute in one call, animate the recorded
steps), Replay, the replay slider, loading a run file, Stop, and the plain `/fill` API (one call,
a JSON answer). Also the animation's pace and the frames, which the compare tab shares.

Every handler's parameters are named (text, model, order, group_size, ...): they are the API's
parameter names (gradio_client's view_api), and each widget's value is its default there.

An animation shows at most MAX_FRAMES frames, evenly spaced over the steps and always ending on
the last, and lasts at most MAX_ANIMATION_S however many steps a run (or a loaded file) has:
a run slot is shared by everyone, so no request may hold one for long.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import gradio as gr

from . import figures, model_menu, render, run_file, run_schema
from .candidate_plan import plan_candidates
from .compute import execute, execute_candidates, score_shown
from .request import RunRequest, int_in, prepare
from .texts import error_md, failure_md, failure_text, model_note_for_file

MAX_ANIMATION_S = 20.0  # a long run's animation is sped up to fit this, and cut short if frames are slow
MAX_FRAMES = 300  # frames per animation; longer runs show evenly spaced steps


def step_delay(speed, n_frames: int) -> float:
    """Seconds between frames: the user's speed (0 to 2 s; anything else is the default 0.2),
    shortened so n_frames last at most MAX_ANIMATION_S."""
    try:
        d = max(0.0, min(float(speed), 2.0))
    except (TypeError, ValueError):
        d = 0.2
    if d != d:  # NaN
        d = 0.2
    return min(d, MAX_ANIMATION_S / max(n_frames, 1))


def frame_steps(n_steps: int) -> list[int]:
    """The step counts the animation shows after frame 0: every one of 1..n_steps, or
    MAX_FRAMES of them evenly spaced, always including n_steps."""
    if n_steps <= MAX_FRAMES:
        return list(range(1, n_steps + 1))
    return sorted({round(n_steps * i / MAX_FRAMES) for i in range(1, MAX_FRAMES + 1)})


def paced(ks: list[int], speed):
    """Yield the ks with the animation's pause before each, skipping to the last once the
    animation has run MAX_ANIMATION_S (frames that render slowly cannot stretch it)."""
    delay = step_delay(speed, len(ks))
    end = time.monotonic() + MAX_ANIMATION_S
    for i, k in enumerate(ks):
        last = i == len(ks) - 1
        if not last and time.monotonic() > end:
            continue
        if delay:
            time.sleep(delay)
        yield k


def preview(run, plan=None) -> dict:
    """A record with no steps yet: frame 0 of the animation (of a prepared run, or of its plan's first length)."""
    return run_file.make_record(run.model, run.request.settings, plan.requests[0].enc if plan else run.enc)


def compute(run, plan=None) -> dict:
    """The finished record of a prepared run: its plan's ranked candidates, or the run alone."""
    return execute_candidates(run, plan) if plan else execute(run)


DEFAULT = RunRequest()  # every request value's default, for the API's signature


def fill(text: str = "The cat [[4]] on the mat.", model: str | None = None, order: str = DEFAULT.strategy,
         group_size: int = DEFAULT.group_size, threshold: float = 0.0, custom_order: str = "",
         temperature: float = DEFAULT.temperature, top_k: int = DEFAULT.top_k, top_p: float = DEFAULT.top_p,
         seed: int = DEFAULT.seed, candidates: int = DEFAULT.candidates, pool: str = DEFAULT.pool) -> dict:
    """Fill the blanks of `text` in one call and return the run as JSON (render.api_answer): the
    filled text, each blank's fill with its tokens and their probabilities, the order and its steps,
    the log-likelihoods and the ranked candidates. [[N]] is a blank of N tokens, [[?]] a blank whose
    length the model picks; model None is the menu's default. A bad value raises gr.Error saying what
    to change."""
    try:
        request = RunRequest.check(text, order, group_size, threshold, custom_order, temperature, top_k, top_p,
                                   seed, candidates, pool)
        run = prepare(request, model_menu.available_models()[0].key if model is None else model)
        return render.api_answer(compute(run, plan_candidates(run)))
    except Exception as e:  # noqa: BLE001 — the client gets the message (failure_text logs the unexpected)
        raise gr.Error(failure_text(e), print_exception=False) from None


def stats_table(rec: dict) -> list[list[str]]:
    return [[k, v] for k, v in render.stats_rows(rec)]


def wire(page: SimpleNamespace) -> None:
    """Connect Fill, Replay, the slider, Load, and Stop (components from ui.py)."""
    run_inputs = [page.template, page.model_dd, page.strategy, page.group_size, page.threshold, page.custom_order,
                  page.temperature, page.top_k, page.top_p, page.seed, page.story_state]
    run_out = [page.result, page.caption, page.replay_sl, page.status, page.stats_df, page.filled,
               page.order_plot, page.token_plot, page.download, page.run_state, page.cands_df, page.cand_pick]
    settings_out = [page.template, page.strategy, page.group_size, page.threshold, page.custom_order,
                    page.temperature, page.top_k, page.top_p, page.seed, page.n_cands, page.pool]
    skip_all = (gr.skip(),) * len(run_out)

    def frame(rec, k, final=False):
        """Outputs for frame k of a run; the heavier ones only on the final frame."""
        n = len(rec["steps"])
        out = [render.frame_spans(rec, k), render.md_escape(render.caption(rec, k)),
               gr.update(maximum=max(n, 1), value=k, visible=n > 0)]
        if not final:
            return tuple(out) + (gr.skip(),) * (len(run_out) - 3)
        st = rec["stats"]
        done = (f"Done: {st['tokens']} tokens in {len(rec['steps'])} steps, {st['forward_passes']} forward "
                f"passes, {st['decode_seconds']:.3f} s ({st['tokens_per_s'] or 0:.0f} tokens/s).")
        cands = render.candidate_rows(rec)
        if rec.get("chosen"):  # a blank the model ended itself: its length, and how sure it was
            done += " " + render.chosen_note(rec)
        if rec.get("ranking"):
            done += " " + render.ranking_note(rec)
        return tuple(out) + (done, stats_table(rec), render.filled_text(rec), figures.order_figure(rec),
                             figures.token_figure(rec), gr.update(value=run_file.save_run(rec), interactive=True),
                             rec, cands, gr.update(choices=[(f"#{r[0]}: {r[1][:60]}", r[0] - 1) for r in cands],
                                                   value=rec.get("shown", 0) if cands else None,
                                                   interactive=bool(cands)))

    def animate(rec, speed):
        n = len(rec["steps"])
        for k in paced(frame_steps(n) or [0], speed):
            yield frame(rec, k, final=k == n)

    def run_fill(text, model, order, group_size, threshold, custom_order, temperature, top_k, top_p, seed,
                 story, speed, candidates, pool):
        """Fill the blanks of `text` ([[N]]: a blank of N tokens; [[?]]: the model picks the
        length) and stream the animation's frames; the last frame holds the filled story."""
        try:
            request = RunRequest.check(text, order, group_size, threshold, custom_order, temperature, top_k, top_p,
                                       seed, candidates, pool)
            run = prepare(request, model, story)
            plan = plan_candidates(run)
        except ValueError as e:
            yield skip_all[:3] + (error_md(str(e)),) + skip_all[4:]
            return
        # frame 0 at once; last run's numbers, plots, file and candidates cleared
        rows = len(plan.requests) * len(plan.configs) if plan else 1
        wait = f"Computing {rows} candidates…" if rows > 1 else "Computing…"
        yield frame(preview(run, plan), 0)[:3] + (wait, [], "", None, None, gr.update(value=None, interactive=False),
                                                  gr.skip(), [], gr.update(choices=[], value=None, interactive=False))
        try:
            rec = compute(run, plan)
        except Exception as e:  # noqa: BLE001 — say so on the page; the page goes on
            yield skip_all[:3] + (failure_md(e),) + skip_all[4:]
            return
        if step_delay(speed, 1) == 0:  # animation off: the finished run at once, no frame in between
            yield frame(rec, len(rec["steps"]), final=True)
        else:
            yield from animate(rec, speed)

    def show_candidate(candidate, rec, speed):
        """Animate ranked candidate number `candidate` (0 = the best) of the session's last run; the list stays."""
        try:
            if not rec or not rec.get("candidates"):
                raise ValueError("there are no candidates to show: run with more than one candidate, or a [[?]] blank")
            k = int_in(candidate, "the candidate number", 0, len(rec["candidates"]) - 1)
        except ValueError as e:
            yield skip_all[:3] + (error_md(str(e)),) + skip_all[4:]
            return
        cand = rec["candidates"][k]
        if cand.get("both") is None and cand.get("record", {}).get("steps"):  # a CPU ranking left it to the showing
            try:
                cand["both"] = score_shown(rec["model"]["key"], cand["record"])
                cand["record"]["stats"]["ar_log_likelihood"] = cand["both"]
            except (KeyError, ValueError):  # a model no longer on the menu: the column stays empty
                pass
        chosen = {**cand["record"], "candidates": rec["candidates"], "ranking": rec["ranking"], "shown": k}
        yield frame(chosen, 0)
        yield from animate(chosen, speed)

    def on_scrub(step, rec):
        """The session's last run after `step` steps: the story, the caption, the order plot."""
        try:
            k = int_in(step, "the replay step", 0, run_file.MAX_POSITIONS)
            if not rec:
                raise ValueError("nothing to scrub yet: run something or load a run file")
            k = int_in(k, "the replay step", 0, len(rec["steps"]))
        except ValueError as e:
            return gr.skip(), error_md(str(e)), gr.skip()
        return render.frame_spans(rec, k), render.md_escape(render.caption(rec, k)), figures.order_figure(rec, k)

    def replay(rec, speed):
        """Animate the session's last run again, from its recorded steps."""
        if not rec:
            yield skip_all[:3] + ("Nothing to replay yet: run something or load a run file.",) + skip_all[4:]
            return
        yield frame(rec, 0)
        yield from animate(rec, speed)

    def load_run(file, speed):
        """Replay a run file this app wrote; its settings go back into the widgets."""
        n_extra = len(settings_out)
        try:
            rec = run_schema.from_json(file if file is not None else b"", model_menu.max_context())
        except ValueError as e:
            yield skip_all[:3] + (error_md(str(e)),) + skip_all[4:] + (gr.skip(),) * n_extra
            return
        r = RunRequest(**rec["settings"])  # rebuilt by from_json through RunRequest.check: back into the widgets
        values = (r.template, r.strategy, r.group_size, r.threshold or 0, r.custom_order, r.temperature, r.top_k,
                  r.top_p, str(r.seed), r.candidates, r.pool)
        note = "Loaded the run file; replaying its recorded steps."
        if rec["model"]["key"] not in {e.key for e in model_menu.available_models()}:
            note = model_note_for_file(rec)
        first = True
        for out in replay(rec, speed):
            if first:
                out = out[:3] + (note,) + out[4:]
            yield out + (values if first else (gr.skip(),) * len(values))
            first = False

    run_ev = page.run_btn.click(run_fill, run_inputs + [page.speed, page.n_cands, page.pool], run_out,
                                concurrency_limit=16, concurrency_id="run", api_name="run", show_progress="minimal")
    replay_ev = page.replay_btn.click(replay, [page.run_state, page.speed], run_out, concurrency_limit=16,
                                      concurrency_id="run", api_name="replay")
    load_ev = page.upload.upload(load_run, [page.upload, page.speed], run_out + settings_out,
                                 concurrency_limit=16, concurrency_id="run", api_name="load_run")
    page.show_cand.click(show_candidate, [page.cand_pick, page.run_state, page.speed], run_out, concurrency_limit=16,
                         concurrency_id="run", api_name="show_candidate")
    page.replay_sl.input(on_scrub, [page.replay_sl, page.run_state], [page.result, page.caption, page.order_plot],
                         trigger_mode="always_last", show_progress="hidden", api_name="scrub")
    page.stop_btn.click(lambda: "Stopped.", None, page.status, cancels=[run_ev, replay_ev, load_ev], queue=False,
                        api_visibility="private")
    gr.api(fill, api_name="fill", concurrency_limit=16, concurrency_id="run")
