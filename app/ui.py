"""The page: build_demo lays out the main tab (story editor, run controls, "Plots and numbers") and
wires its events; launch_kwargs gives launch() its CSS and theme. The "Compare two orders" tab is in
compare_tab.py, the run plumbing (checking, computing, run files) in runs.py, the CSS, help text and
page notes in texts.py. Formatting lives in render.py / figures.py, story editing in story.py.

Every run is computed in one call (runner.compute) and then animated from its recorded steps at
the user's speed; Stop cancels the animation. Module-level state is read-only (the model menu,
the examples, loaded models); each user's story, last run and comparison live in gr.State.
"""
from __future__ import annotations

import os
import random
import time

import gradio as gr

from model.core.decode import DYNAMIC_ORDERS

from . import compare_tab, figures, models, record, render, runner, story
from .runs import (execute, load_examples, prepare_run, preview, save_run, stats_table, step_delay,
                   tokenizer)
from .texts import (CSS, HOW, STRATEGY_CHOICES, TITLE, error_md, failure_md, model_note,
                    model_note_for_file)


def build_demo() -> gr.Blocks:
    menu = models.available_models()
    default = menu[0]
    models.load(default.key)  # load before the first visitor: the app is ready when it is up
    examples = load_examples()
    first = examples[0][1] if examples else "The cat [[2]] on the mat."
    tok0, ctx0 = tokenizer(default.key)
    v0 = story.view(first, story.new_state(first), tok0, ctx0)

    # delete_cache: Gradio's copies of downloaded run files go after an hour too
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        story_state = gr.State(v0.state)
        run_state = gr.State(None)

        gr.Markdown(f"# {TITLE}: blank out any span, pick an order, watch A3 fill it\n"
                    "A3 (any-order any-subset autoregression, arXiv 2601.13228) fills blanks one *group* "
                    "of tokens at a time, in any order you choose, with every token's probability on screen.")
        model_md = gr.Markdown(model_note(default.key), elem_id="model-note")

        with gr.Row():
            with gr.Column(scale=3):
                ex_ds = gr.Dataset(components=["textbox"], samples=[[t] for _, t in examples],
                                   sample_labels=[t for t, _ in examples], type="index",
                                   label="Example stories (click one)", elem_id="examples")
                editor = gr.HighlightedText(
                    v0.editor, interactive=True, color_map=render.EDITOR_COLORS, combine_adjacent=False,
                    show_legend=False, label="Story: select text to blank it · click a blank to type its "
                    "length · × undoes it", elem_id="story-editor")
                story_info = gr.Markdown(v0.info, elem_id="story-info")
                with gr.Row():
                    sent_btn = gr.Button("Blank a random sentence", size="sm", elem_id="blank-sentence")
                    words_btn = gr.Button("Blank 15% of the words", size="sm", elem_id="blank-words")
                    restore_btn = gr.Button("Restore blanked text", size="sm", elem_id="restore")
                with gr.Accordion("Story as text ([[N]] = a blank of N tokens), blanks table, blank options",
                                  open=False, elem_id="text-accordion"):
                    template = gr.Textbox(v0.template, lines=5, max_lines=20, label="Story as text: [[N]] is a "
                                          "blank of N tokens", elem_id="template")
                    blanks_df = gr.Dataframe(
                        v0.table, headers=["#", "tokens", "text before it", "original", "group (custom)"],
                        datatype=["number", "number", "str", "str", "number"], static_columns=[0, 1, 2, 3],
                        interactive=True, label="Blanks: type group numbers here to set a custom order",
                        max_height=220, elem_id="blanks-table")
                    with gr.Row():
                        frac_sl = gr.Slider(0.05, 0.5, value=0.15, step=0.05, label="fraction of words to blank")
                        new_len = gr.Number(0, minimum=0, maximum=1024, precision=0, label="new blank length "
                                            "(0 = tokens of the selected text)", elem_id="new-length")
                with gr.Row():
                    run_btn = gr.Button("Fill the blanks", variant="primary", elem_id="run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                caption = gr.Markdown("Press **Fill the blanks** to run.", elem_id="caption",
                                      elem_classes=["caption"])
                result = gr.HighlightedText([], color_map=render.COLOR_MAP, show_legend=True,
                                            combine_adjacent=False, label="Filling", elem_id="result")
                replay_sl = gr.Slider(0, 1, value=0, step=1, label="Replay: scrub through the steps",
                                      visible=False, elem_id="replay")
                status = gr.Markdown("", elem_id="status")
            with gr.Column(scale=2):
                model_dd = gr.Dropdown([(e.label, e.key) for e in menu], value=default.key, label="Model",
                                       elem_id="model")
                strategy = gr.Dropdown(STRATEGY_CHOICES, value="left_to_right", label="Order",
                                       elem_id="strategy")
                group_size = gr.Slider(*runner.LIMITS["group_size"], value=1, step=1, label="Group size (tokens per step; "
                                       "dynamic: k per step)", elem_id="group-size")
                threshold = gr.Slider(*runner.LIMITS["threshold"], value=0, step=0.05, label="Dynamic only: probability threshold "
                                      "(0 = off, use k)", elem_id="threshold")
                custom_order = gr.Textbox("", label="Custom order: one group number per blank, e.g. 2 1 3",
                                          placeholder="2 1 3", elem_id="custom-order")
                with gr.Accordion("Sampling", open=True):
                    temperature = gr.Slider(*runner.LIMITS["temperature"], value=0, step=0.05, label="Temperature (0 = greedy)",
                                            elem_id="temperature")
                    top_k = gr.Slider(*runner.LIMITS["top_k"], value=0, step=1, label="Top-k (0 = off)", elem_id="top-k")
                    top_p = gr.Slider(*runner.LIMITS["top_p"], value=1, step=0.05, label="Top-p (1 = off)", elem_id="top-p")
                    with gr.Row():
                        seed = gr.Textbox("0", label="Seed", elem_id="seed", scale=3)
                        dice = gr.Button("Random seed", size="sm", scale=1, elem_id="dice")
                speed = gr.Slider(0, 1, value=0.15, step=0.05, label="Animation: seconds per step (0 = instant)",
                                  elem_id="speed")

        with gr.Tabs():
            with gr.Tab("Plots and numbers", id="result-tab"):
                with gr.Row():
                    stats_df = gr.Dataframe(headers=["", "this run"], datatype=["str", "str"],
                                            interactive=False, label="Speed and likelihood", elem_id="stats",
                                            wrap=True)
                    filled = gr.Textbox(label="Filled story (plain text)", lines=6, interactive=False,
                                        buttons=["copy"], elem_id="filled")
                order_plot = gr.Plot(label="Decoding order", elem_id="order-plot")
                token_plot = gr.Plot(label="Token probabilities and entropy", elem_id="token-plot")
                with gr.Row():
                    replay_btn = gr.Button("Replay the animation", elem_id="replay-btn")
                    download = gr.DownloadButton("Download run (JSON)", value=None, interactive=False,
                                                 elem_id="download")
                    upload = gr.UploadButton("Load a run (JSON)", file_types=[".json"], type="binary",
                                             elem_id="upload")
            cmp = compare_tab.build_layout()
            with gr.Tab("How it works"):
                gr.Markdown(HOW)

        # -------------------------------------------------------------------------------------
        # story events: every one returns the same five outputs
        story_out = [template, editor, blanks_df, story_info, story_state]

        def show(template_text, state, key, custom="", note=""):
            tok, ctx = tokenizer(key)
            v = story.view(template_text, state or {}, tok, ctx, custom or "", note)
            return v.template, gr.skip() if v.editor is None else v.editor, v.table, v.info, v.state

        def show_segments(segments, key, custom, note=""):
            st = story.state_of(segments)
            return show(st["template"], st, key, custom, note)

        def on_typed(template_text, state, key, custom):
            state = dict(state or {})
            old = state.get("originals") or []
            try:  # typing elsewhere keeps what the blanks remember, if their number is unchanged
                n = len(story.blanks_of(story.parse_template(template_text)))
                if n == len(old):
                    state["template"] = story.clean_text(template_text)[0]
            except ValueError:
                pass
            return show(template_text, state, key, custom)

        def on_example(idx, key, custom):
            if idx is None or not 0 <= int(idx) < len(examples):
                return (gr.skip(),) * 5
            text = examples[int(idx)][1]
            return show(text, story.new_state(text), key, custom)

        def on_editor(pieces, state, length, key, custom):
            tok, _ = tokenizer(key)
            try:
                n = int(length) if length else 0
                if not 0 <= n <= 1024:
                    raise ValueError("the new blank length must be between 0 and 1024")
                got = story.from_editor(pieces, state or {}, tok, n or None)
            except ValueError as e:
                return gr.skip(), gr.skip(), gr.skip(), error_md(str(e)), gr.skip()
            if got is None:  # our own render coming back: nothing to do
                return (gr.skip(),) * 5
            segments, note = got
            return show_segments(segments, key, custom, note)

        def helper(kind):
            def fn(template_text, state, frac, key, custom):
                tok, _ = tokenizer(key)
                try:
                    if kind == "sentence":
                        segments = story.random_sentence(template_text, state or {}, tok, random.Random())
                    elif kind == "words":
                        segments = story.fraction_of_words(template_text, state or {}, float(frac), tok,
                                                           random.Random())
                    else:
                        segments, n = story.restore(template_text, state or {})
                        if not n:
                            return show(template_text, state, key, custom,
                                        "No blank remembers its original text (blanks typed as [[N]] do not).")
                except ValueError as e:
                    return gr.skip(), gr.skip(), gr.skip(), error_md(str(e)), gr.skip()
                return show_segments(segments, key, custom)
            return fn

        template.input(on_typed, [template, story_state, model_dd, custom_order], story_out,
                       trigger_mode="always_last", show_progress="hidden", api_name="story")
        ex_ds.click(on_example, [ex_ds, model_dd, custom_order], story_out, show_progress="hidden",
                    api_name="example")
        editor.change(on_editor, [editor, story_state, new_len, model_dd, custom_order], story_out,
                      show_progress="hidden", api_name="editor")
        helper_in = [template, story_state, frac_sl, model_dd, custom_order]
        sent_btn.click(helper("sentence"), helper_in, story_out, api_name="blank_sentence")
        words_btn.click(helper("words"), helper_in, story_out, api_name="blank_words")
        restore_btn.click(helper("restore"), helper_in, story_out, api_name="restore")
        frac_sl.change(lambda f: gr.update(value=f"Blank {round(float(f) * 100)}% of the words"), frac_sl,
                       words_btn, show_progress="hidden", api_visibility="private")

        def on_model(key, template_text, state, custom):
            return (model_note(key),) + show(template_text, state, key, custom)

        model_dd.change(on_model, [model_dd, template, story_state, custom_order], [model_md] + story_out,
                        api_visibility="private")

        def on_table(rows):
            try:
                groups = [int(float(r[4])) for r in (rows.values.tolist() if hasattr(rows, "values") else rows)]
            except (TypeError, ValueError, IndexError):
                return gr.skip(), gr.skip(), error_md("group numbers in the blanks table must be whole numbers")
            return " ".join(map(str, groups)), "custom", gr.skip()

        blanks_df.input(on_table, blanks_df, [custom_order, strategy, story_info], show_progress="hidden",
                        api_visibility="private")
        custom_order.input(lambda t, s, k, c: show(t, s, k, c)[2], [template, story_state, model_dd, custom_order],
                           blanks_df, trigger_mode="always_last", show_progress="hidden", api_visibility="private")
        dice.click(lambda: str(random.randrange(1_000_000)), None, seed, api_visibility="private")

        # -------------------------------------------------------------------------------------
        # a run: check, show frame 0 at once, compute in one call, animate the recorded steps
        run_inputs = [template, model_dd, strategy, group_size, threshold, custom_order, temperature, top_k,
                      top_p, seed, story_state]
        run_out = [result, caption, replay_sl, status, stats_df, filled, order_plot, token_plot, download,
                   run_state]
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
            return tuple(out) + (done, stats_table(rec), render.filled_text(rec), figures.order_figure(rec),
                                 figures.token_figure(rec), gr.update(value=save_run(rec), interactive=True), rec)

        def animate(rec, speed, start=1):
            delay = step_delay(speed, len(rec["steps"]))
            for k in range(start, len(rec["steps"])):
                if delay:
                    time.sleep(delay)
                yield frame(rec, k)
            if delay:
                time.sleep(delay)
            yield frame(rec, len(rec["steps"]), final=True)

        def run_fill(*args):
            *inputs, speed = args
            try:
                settings, enc, cfg, entry = prepare_run(*inputs)
            except ValueError as e:
                yield skip_all[:3] + (error_md(str(e)),) + skip_all[4:]
                return
            # frame 0 at once; last run's numbers, plots and file cleared
            yield frame(preview(settings, enc, entry), 0)[:3] + (
                "Computing…", [], "", None, None, gr.update(value=None, interactive=False), gr.skip())
            try:
                rec = execute(settings, enc, cfg, entry)
            except Exception as e:  # noqa: BLE001 — say so on the page; the page goes on
                yield skip_all[:3] + (failure_md(e),) + skip_all[4:]
                return
            yield from animate(rec, speed)

        def on_scrub(k, rec):
            if not rec:
                return gr.skip(), gr.skip(), gr.skip()
            return render.frame_spans(rec, k), render.md_escape(render.caption(rec, k)), figures.order_figure(rec, k)

        def replay(rec, speed):
            if not rec:
                yield skip_all[:3] + ("Nothing to replay yet: run something or load a run file.",) + skip_all[4:]
                return
            yield frame(rec, 0)
            yield from animate(rec, speed)

        settings_out = [template, strategy, group_size, threshold, custom_order, temperature, top_k, top_p, seed]

        def load_run(data, speed):
            n_extra = len(settings_out)
            try:
                rec = record.from_json(data if data is not None else b"")
            except ValueError as e:
                yield skip_all[:3] + (error_md(str(e)),) + skip_all[4:] + (gr.skip(),) * n_extra
                return
            s = rec["settings"]
            values = (s["template"], s["strategy"], s["group_size"], s["threshold"] or 0, s["custom_order"],
                      s["temperature"], s["top_k"], s["top_p"], str(s["seed"]))
            try:  # the settings go back into the widgets: hold them to the widgets' rules
                runner.settings_from_inputs(*values)
            except ValueError as e:
                yield skip_all[:3] + (error_md(f"the run file's settings are invalid: {e}"),) + skip_all[4:] + (
                    gr.skip(),) * n_extra
                return
            note = "Loaded the run file; replaying its recorded steps."
            if rec["model"].get("path") not in {e.key for e in models.available_models()}:
                note = model_note_for_file(rec)
            first = True
            for out in replay(rec, speed):
                if first:
                    out = out[:3] + (note,) + out[4:]
                yield out + (values if first else (gr.skip(),) * len(values))
                first = False

        run_ev = run_btn.click(run_fill, run_inputs + [speed], run_out, concurrency_limit=8,
                               concurrency_id="run", api_name="run", show_progress="minimal")
        replay_ev = replay_btn.click(replay, [run_state, speed], run_out, concurrency_limit=8,
                                     concurrency_id="run", api_name="replay")
        load_ev = upload.upload(load_run, [upload, speed], run_out + settings_out,
                                concurrency_limit=8, concurrency_id="run", api_name="load_run")
        replay_sl.input(on_scrub, [replay_sl, run_state], [result, caption, order_plot], trigger_mode="always_last",
                        show_progress="hidden", api_name="scrub")
        stop_btn.click(lambda: "Stopped.", None, status, cancels=[run_ev, replay_ev, load_ev], queue=False,
                       api_visibility="private")

        # -------------------------------------------------------------------------------------
        # comparison (compare_tab.py): two runs of the same request, animated in lockstep
        sampling_inputs = [temperature, top_k, top_p, seed]
        compare_tab.wire(cmp, template, model_dd, story_state, sampling_inputs, speed)
        sides = cmp.sides

        def toggle(strat):
            dyn = strat in DYNAMIC_ORDERS
            return gr.update(interactive=dyn), gr.update(visible=strat == "custom")

        strategy.change(toggle, strategy, [threshold, custom_order], show_progress="hidden", api_visibility="private")
        for s in sides:
            s[0].change(toggle, s[0], [s[2], s[3]], show_progress="hidden", api_visibility="private")
        demo.load(toggle, strategy, [threshold, custom_order], api_visibility="private")
        for s in sides:
            demo.load(toggle, s[0], [s[2], s[3]], api_visibility="private")
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo


def launch_kwargs() -> dict:
    """css/theme go to launch() in Gradio 6; host and port come from GRADIO_SERVER_NAME/PORT."""
    return {"css": CSS, "theme": gr.themes.Soft(primary_hue="indigo"), "max_file_size": "25mb",
            "server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1" if not os.environ.get("SPACE_ID") else "0.0.0.0")}
