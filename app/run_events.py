"""The run's events: Fill (check, frame 0 at once, compute in one call, animate the recorded
steps), Replay, the replay slider, loading a run file, Stop. Also the animation's pace and the
frames, which the compare tab shares.

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
from .compute import execute, execute_candidates
from .request import int_in, prepare_run
from .texts import error_md, failure_md, model_note_for_file

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


def preview(settings: dict, enc, entry: dict) -> dict:
    """A record with no steps yet: frame 0 of the animation."""
    return run_file.make_record(entry, settings, enc)


def stats_table(rec: dict) -> list[list[str]]:
    return [[k, v] for k, v in render.stats_rows(rec)]


def wire(page: SimpleNamespace) -> None:
    """Connect Fill, Replay, the slider, Load, and Stop (components from ui.py)."""
    run_inputs = [page.template, page.model_dd, page.strategy, page.group_size, page.threshold, page.custom_order,
                  page.temperature, page.top_k, page.top_p, page.seed, page.story_state]
    run_out = [page.result, page.caption, page.replay_sl, page.status, page.stats_df, page.filled,
               page.order_plot, page.token_plot, page.download, page.run_state, page.cands_df, page.cand_pick]
    settings_out = [page.template, page.strategy, page.group_size, page.threshold, page.custom_order,
                    page.temperature, page.top_k, page.top_p, page.seed]
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

    def run_fill(*args):
        *inputs, speed, n_cands, pool = args
        try:
            settings, enc, cfg, entry, segments = prepare_run(*inputs, candidates=n_cands, pool=pool)
            tok, ctx = model_menu.tokenizer(entry["key"])
            plan = plan_candidates(settings, segments, cfg, tok, ctx)
        except ValueError as e:
            yield skip_all[:3] + (error_md(str(e)),) + skip_all[4:]
            return
        # frame 0 at once; last run's numbers, plots, file and candidates cleared
        first = preview(settings, plan.requests[0].enc if plan else enc, entry)
        wait = f"Computing {len(plan.requests) * len(plan.configs)} candidates…" if plan else "Computing…"
        yield frame(first, 0)[:3] + (wait, [], "", None, None, gr.update(value=None, interactive=False), gr.skip(),
                                     [], gr.update(choices=[], value=None, interactive=False))
        try:
            rec = execute_candidates(settings, plan, entry) if plan else execute(settings, enc, cfg, entry)
        except Exception as e:  # noqa: BLE001 — say so on the page; the page goes on
            yield skip_all[:3] + (failure_md(e),) + skip_all[4:]
            return
        if step_delay(speed, 1) == 0:  # animation off: the finished run at once, no frame in between
            yield frame(rec, len(rec["steps"]), final=True)
        else:
            yield from animate(rec, speed)

    def show_candidate(k, rec, speed):
        """Animate ranked candidate k of the last run (its own record); the list stays."""
        try:
            if not rec or not rec.get("candidates"):
                raise ValueError("there are no candidates to show: run with more than one candidate, or a [[?]] blank")
            k = int_in(k, "the candidate number", 0, len(rec["candidates"]) - 1)
        except ValueError as e:
            yield skip_all[:3] + (error_md(str(e)),) + skip_all[4:]
            return
        chosen = {**rec["candidates"][k]["record"], "candidates": rec["candidates"], "ranking": rec["ranking"],
                  "shown": k}
        yield frame(chosen, 0)
        yield from animate(chosen, speed)

    def on_scrub(k, rec):
        try:
            k = int_in(k, "the replay step", 0, run_file.MAX_POSITIONS)
            if not rec:
                raise ValueError("nothing to scrub yet: run something or load a run file")
            k = int_in(k, "the replay step", 0, len(rec["steps"]))
        except ValueError as e:
            return gr.skip(), error_md(str(e)), gr.skip()
        return render.frame_spans(rec, k), render.md_escape(render.caption(rec, k)), figures.order_figure(rec, k)

    def replay(rec, speed):
        if not rec:
            yield skip_all[:3] + ("Nothing to replay yet: run something or load a run file.",) + skip_all[4:]
            return
        yield frame(rec, 0)
        yield from animate(rec, speed)

    def load_run(data, speed):
        n_extra = len(settings_out)
        try:
            rec = run_schema.from_json(data if data is not None else b"", model_menu.max_context())
        except ValueError as e:
            yield skip_all[:3] + (error_md(str(e)),) + skip_all[4:] + (gr.skip(),) * n_extra
            return
        s = rec["settings"]  # checked by from_json against the widgets' rules: they go back into the widgets
        values = (s["template"], s["strategy"], s["group_size"], s["threshold"] or 0, s["custom_order"],
                  s["temperature"], s["top_k"], s["top_p"], str(s["seed"]))
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
