"""The Gradio Blocks: layout and event wiring. Formatting lives in render.py / figures.py, story
editing in story.py, checking and computing in runner.py; this file only connects them.

Every run is computed in one call (runner.compute) and then animated from its recorded steps at
the user's speed; Stop cancels the animation. Module-level state is read-only (the model menu,
the examples, loaded models); each user's story, last run and comparison live in gr.State.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr

from model.decode import DYNAMIC_ORDERS

from . import figures, models, record, render, runner, story

log = logging.getLogger("a3studio")
TITLE = "A3 Studio"
MAX_ANIMATION_S = 20.0  # a long run's animation is sped up to fit this
STRATEGY_CHOICES = [(render.STRATEGY_LABELS[s], s) for s in (
    "left_to_right", "right_to_left", "random", "outside_in", "custom",
    "confidence", "margin", "entropy", "dynamic_random")]
RUN_DIR = Path(tempfile.gettempdir()) / "a3-studio-runs"

CSS = """
/* HighlightedText as running text: inline tokens, words never broken */
#story-editor .textfield, #result .textfield, .cmp-result .textfield {
  display: block; word-break: normal; overflow-wrap: break-word; line-height: 2.0; font-size: 16px;}
#story-editor .token-container, #result .token-container, .cmp-result .token-container,
#story-editor .token, #result .token, .cmp-result .token {display: inline;}
#result .token.highlighted, .cmp-result .token.highlighted {margin: 0; padding: 2px 0; border-radius: 2px;}
#result .legend-item {font-size: 12px;}
.caption p {font-family: ui-monospace, monospace; font-size: 13px;}
#model-note p {margin: 0;}
.warn {color: #b45309;}
#dice {align-self: end; margin-bottom: 6px;}
"""

HOW = """
**Blanks.** Select text in the story editor to blank it: the blank's length is the number of tokens
of the text it replaces (or the *new blank length* when that is above 0). Click a blank and type a
number as its label to resize it; click its × to undo it. Or write blanks in the text box:
`[[N]]` is a blank of N tokens, e.g. `The cat [[4]] on the mat.` The space before a blank belongs
to the blank (the model writes `␣sat`, as the tokenizer spells words). Control characters are
removed; markup is shown as text.

**Orders.** Fixed orders fill the blank tokens left-to-right, right-to-left, in a seeded random
order, or outside-in (from both edges of each blank towards its middle), *group size* tokens per
step. A custom order gives each blank a group number (`2 1 3`: blank 2 first, then blank 1, then
blank 3; blanks that share a number are filled together), each blank *group size* tokens per step,
left to right inside it. Dynamic orders score every open blank token each step and commit the best
*k*: by confidence (top probability), margin (top1 − top2), low entropy, or at random; with a
probability threshold they commit every token whose top probability reaches it (at least one).

**Colours.** ▁ is a token still to generate. Filled tokens are coloured by the probability the
model gave them; the tokens of the step on screen are strong, earlier ones pale.

**Likelihood.** *log p, this run's order* sums the log-probabilities of the run's own steps:
exact when every step fills one token, otherwise group-factorized (tokens of one step are
predicted independently given earlier steps). *log p, left-to-right* rescores the finished text
with one token at a time, left to right: exact, and on the same scale for every strategy.

**Speed.** A step is one forward pass through the model, with a cache of the committed tokens
(the A3 reference code re-runs a full forward per group instead). Temperature 0 is greedy.
"""


# ----------------------------------------------------------------------------------------------
# helpers


def load_examples() -> list[tuple[str, str]]:
    """(title, template) of every assets/examples/*.txt, in file order."""
    out = []
    for p in sorted(models.EXAMPLES.glob("*.txt")):
        title = re.sub(r"^\d+[-_]", "", p.stem).replace("-", " ").replace("_", " ").capitalize()
        out.append((title, p.read_text(encoding="utf-8").strip()))
    return out


def _entry(key: str) -> models.ModelEntry:
    for e in models.available_models():
        if e.key == key:
            return e
    raise ValueError("that model is not in the menu any more; pick one from the list")


def model_note(key: str) -> str:
    try:
        e = _entry(key)
        model, _ = models.load(key)
    except Exception as err:  # a broken checkpoint must not take the page down
        return f"⚠️ cannot load this model: {render.md_escape(str(err))}"
    n = sum(p.numel() for p in model.parameters()) / 1e6
    text = (f"**Model:** {render.md_escape(e.label)} · {n:.1f}M parameters · context "
            f"{models.context_size(model)} tokens · {model.device.type}")
    if not e.trained:
        text += ("  \n<span class='warn'>⚠️ **Untrained random model**: the words it writes are "
                 "gibberish; the orders, steps, probabilities and speed are real.</span>")
    return text


def _tok(key: str):
    model, tok = models.load(key)
    return tok, models.context_size(model)


def _delay(speed: float, n_steps: int) -> float:
    try:
        d = max(0.0, min(float(speed), 2.0))
    except (TypeError, ValueError):
        d = 0.2
    return min(d, MAX_ANIMATION_S / max(n_steps, 1))


def _save(rec: dict) -> str:
    """Write a run file for the download button; files older than an hour are removed."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    for old in RUN_DIR.iterdir():
        try:
            if time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    d = RUN_DIR / uuid.uuid4().hex[:12]
    d.mkdir()
    s = rec["settings"]
    path = d / f"a3-run-{s['strategy']}-seed{s['seed']}.json"
    path.write_text(record.to_json(rec), encoding="utf-8")
    return str(path)


def _stats_table(rec: dict) -> list[list[str]]:
    return [[k, v] for k, v in render.stats_rows(rec)]


def _preview(settings: dict, enc, entry: dict) -> dict:
    """A record with no steps yet: frame 0 of the animation."""
    return record.make_record(entry, settings, enc, [], None, 0.0)


def _error(msg: str) -> str:
    return f"⚠️ {render.md_escape(msg)}"


def _failed(err: Exception) -> str:
    """A refused request (ValueError) says what to change; anything else is logged and reported."""
    if isinstance(err, ValueError):
        return _error(str(err))
    log.exception("decoding failed")
    return _error(f"decoding failed ({type(err).__name__}: {err}); try again or pick other settings")


def prepare_run(template, model_key, strategy, group_size, threshold, custom_order, temperature, top_k,
                top_p, seed, state):
    """Check everything a run needs: (settings, encoded, cfg, entry dict) or ValueError."""
    entry = _entry(model_key)
    settings = runner.settings_from_inputs(template, strategy, group_size, threshold, custom_order,
                                           temperature, top_k, top_p, seed)
    model, tok = models.load(entry.key)
    clean = story.clean_text(settings["template"])[0]
    originals = (state or {}).get("originals") if (state or {}).get("template") == clean else None
    _, enc, cfg = runner.build_request(settings, tok, models.context_size(model), originals)
    return settings, enc, cfg, {"label": entry.label, "path": entry.key, "trained": entry.trained}


def execute(settings, enc, cfg, entry) -> dict:
    t0 = time.perf_counter()
    steps, ar, _ = runner.compute(entry["path"], enc.input_ids, enc.blank_mask, cfg)
    rec = record.make_record(entry, settings, enc, steps, ar, time.perf_counter() - t0)
    _, tok = models.load(entry["path"])
    out = {p: t for s in steps for p, t in zip(s.positions, s.token_ids)}
    rec["fills"] = [tok.decode([out[p] for p in span]) for span in enc.blank_spans]
    return rec


# ----------------------------------------------------------------------------------------------
# the page


def build_demo() -> gr.Blocks:
    menu = models.available_models()
    default = menu[0]
    models.load(default.key)  # load before the first visitor: the app is ready when it is up
    examples = load_examples()
    first = examples[0][1] if examples else "The cat [[2]] on the mat."
    tok0, ctx0 = _tok(default.key)
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
            with gr.Tab("Compare two orders", id="compare-tab"):
                gr.Markdown("The same story, blanks, model and sampling settings as above, under two orders.")
                with gr.Row():
                    sides = []
                    for name, strat in (("A", "left_to_right"), ("B", "confidence")):
                        with gr.Column():
                            s_dd = gr.Dropdown(STRATEGY_CHOICES, value=strat, label=f"Order {name}",
                                               elem_id=f"cmp-strategy-{name}")
                            s_gs = gr.Slider(*runner.LIMITS["group_size"], value=1, step=1, label="Group size / k")
                            s_thr = gr.Slider(*runner.LIMITS["threshold"], value=0, step=0.05, label="Threshold (dynamic; 0 = off)")
                            s_co = gr.Textbox("", label="Custom order", placeholder="2 1 3")
                            s_cap = gr.Markdown("", elem_classes=["caption"])
                            s_ht = gr.HighlightedText([], color_map=render.COLOR_MAP, show_legend=False,
                                                      show_inline_category=False, combine_adjacent=False, label=f"Result {name}",
                                                      elem_classes=["cmp-result"], elem_id=f"cmp-result-{name}")
                            s_plot = gr.Plot(label=f"Decoding order {name}")
                            sides.append((s_dd, s_gs, s_thr, s_co, s_cap, s_ht, s_plot))
                with gr.Row():
                    cmp_btn = gr.Button("Compare", variant="primary", elem_id="compare")
                    cmp_stop = gr.Button("Stop", variant="stop")
                cmp_status = gr.Markdown("", elem_id="cmp-status")
                cmp_df = gr.Dataframe(headers=["", "A", "B"], datatype=["str", "str", "str"], interactive=False,
                                      wrap=True, label="Side by side", elem_id="cmp-table")
            with gr.Tab("How it works"):
                gr.Markdown(HOW)

        # -------------------------------------------------------------------------------------
        # story events: every one returns the same five outputs
        story_out = [template, editor, blanks_df, story_info, story_state]

        def show(template_text, state, key, custom="", note=""):
            tok, ctx = _tok(key)
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
            tok, _ = _tok(key)
            try:
                n = int(length) if length else 0
                if not 0 <= n <= 1024:
                    raise ValueError("the new blank length must be between 0 and 1024")
                got = story.from_editor(pieces, state or {}, tok, n or None)
            except ValueError as e:
                return gr.skip(), gr.skip(), gr.skip(), _error(str(e)), gr.skip()
            if got is None:  # our own render coming back: nothing to do
                return (gr.skip(),) * 5
            segments, note = got
            return show_segments(segments, key, custom, note)

        def helper(kind):
            def fn(template_text, state, frac, key, custom):
                tok, _ = _tok(key)
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
                    return gr.skip(), gr.skip(), gr.skip(), _error(str(e)), gr.skip()
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
                return gr.skip(), gr.skip(), _error("group numbers in the blanks table must be whole numbers")
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
            return tuple(out) + (done, _stats_table(rec), render.filled_text(rec), figures.order_figure(rec),
                                 figures.token_figure(rec), gr.update(value=_save(rec), interactive=True), rec)

        def animate(rec, speed, start=1):
            delay = _delay(speed, len(rec["steps"]))
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
                yield skip_all[:3] + (_error(str(e)),) + skip_all[4:]
                return
            # frame 0 at once; last run's numbers, plots and file cleared
            yield frame(_preview(settings, enc, entry), 0)[:3] + (
                "Computing…", [], "", None, None, gr.update(value=None, interactive=False), gr.skip())
            try:
                rec = execute(settings, enc, cfg, entry)
            except Exception as e:  # noqa: BLE001 — say so on the page; the page goes on
                yield skip_all[:3] + (_failed(e),) + skip_all[4:]
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
                yield skip_all[:3] + (_error(str(e)),) + skip_all[4:] + (gr.skip(),) * n_extra
                return
            s = rec["settings"]
            values = (s["template"], s["strategy"], s["group_size"], s["threshold"] or 0, s["custom_order"],
                      s["temperature"], s["top_k"], s["top_p"], str(s["seed"]))
            try:  # the settings go back into the widgets: hold them to the widgets' rules
                runner.settings_from_inputs(*values)
            except ValueError as e:
                yield skip_all[:3] + (_error(f"the run file's settings are invalid: {e}"),) + skip_all[4:] + (
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
        # comparison: two runs of the same request, animated in lockstep
        sampling_inputs = [temperature, top_k, top_p, seed]
        cmp_out = [s[5] for s in sides] + [s[4] for s in sides] + [s[6] for s in sides] + [cmp_status, cmp_df]

        def run_compare(template_text, key, state, temp, tk, tp, sd, speed, *side_vals):
            skip = (gr.skip(),) * len(cmp_out)
            recs = []
            try:
                for i in range(2):
                    st, gs, thr, co = side_vals[4 * i:4 * i + 4]
                    recs.append(prepare_run(template_text, key, st, gs, thr, co, temp, tk, tp, sd, state))
            except ValueError as e:
                yield skip[:-2] + (_error(f"order {'AB'[len(recs)]}: {e}"), gr.skip())
                return
            previews = [_preview(r[0], r[1], r[3]) for r in recs]
            yield tuple(render.frame_spans(p, 0) for p in previews) + tuple(
                render.md_escape(render.caption(p, 0)) for p in previews) + skip[4:6] + ("Computing…", gr.skip())
            try:
                done = [execute(*r) for r in recs]
            except Exception as e:  # noqa: BLE001 — say so on the page; the page goes on
                yield skip[:-2] + (_failed(e), gr.skip())
                return
            n = max(len(r["steps"]) for r in done)
            delay = _delay(speed, n)
            for k in range(1, n + 1):
                if delay:
                    time.sleep(delay)
                ks = [min(k, len(r["steps"])) for r in done]
                yield tuple(render.frame_spans(r, j) for r, j in zip(done, ks)) + tuple(
                    render.md_escape(render.caption(r, j)) for r, j in zip(done, ks)) + skip[4:]
            rows = [[name, a, b] for (name, a), (_, b) in zip(render.stats_rows(done[0]), render.stats_rows(done[1]))]
            better = "A" if done[0]["stats"]["ar_log_likelihood"] > done[1]["stats"]["ar_log_likelihood"] else "B"
            yield skip[:4] + tuple(figures.order_figure(r) for r in done) + (
                f"Done. Under the same left-to-right scoring, **{better}**'s fill is the more likely one.", rows)

        cmp_inputs = [template, model_dd, story_state] + sampling_inputs + [speed] + [
            c for s in sides for c in s[:4]]
        cmp_ev = cmp_btn.click(run_compare, cmp_inputs, cmp_out, concurrency_limit=8, concurrency_id="run",
                               api_name="compare", show_progress="minimal")
        cmp_stop.click(lambda: "Stopped.", None, cmp_status, cancels=[cmp_ev], queue=False,
                       api_visibility="private")

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


def model_note_for_file(rec: dict) -> str:
    label = rec.get("model", {}).get("label") or "an unknown model"
    return (f"Replaying a run made with {render.md_escape(str(label))}, which is not loaded here; the replay "
            "uses the recorded steps only.")


def launch_kwargs() -> dict:
    """css/theme go to launch() in Gradio 6; host and port come from GRADIO_SERVER_NAME/PORT."""
    return {"css": CSS, "theme": gr.themes.Soft(primary_hue="indigo"), "max_file_size": "25mb",
            "server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1" if not os.environ.get("SPACE_ID") else "0.0.0.0")}
