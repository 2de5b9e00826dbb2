"""The page: build_demo lays out the main tab and hands the components to the wiring functions.

    build_demo()       layout (story column, controls column, result tabs), then the events:
                       story_events.wire (editing blanks), run_events.wire (run, replay, files),
                       compare_tab.wire (two orders side by side), wire_toggles (order-dependent widgets)
    launch_kwargs()    what launch() takes in Gradio 6: CSS, theme, host

Every run is computed in one call (compute.compute) and then animated from its recorded steps at
the user's speed; Stop cancels the animation. Module-level state is read-only (the model menu,
the examples, loaded models); each user's story, last run and comparison live in gr.State.
The input widgets are request.py's Slider, Dropdown, Number and StoryEditor: Gradio's own, drawn
the same, but a value reaches the app's checks as a client sent it. The model menu's values are
names, which every event resolves through model_menu.menu_entry.
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import gradio as gr

from model.core.decode import DYNAMIC_ORDERS

from . import compare_tab, fallback, model_menu, render, run_events, story, story_events
from .request import LIMITS, Dropdown, Number, Radio, RunRequest, Slider, StoryEditor
from .model_menu import model_note
from .texts import CSS, HOW, STRATEGY_CHOICES, TITLE


def build_demo() -> gr.Blocks:
    model_menu.preload()  # the default model (every model on ZeroGPU) before the first visitor
    menu = model_menu.available_models()
    default = menu[0]
    examples = fallback.load_examples()
    first = examples[0][1] if examples else "The cat [[2]] on the mat."
    tok0, ctx0 = model_menu.tokenizer(default.key)
    v0 = story.view(first, story.new_state(first), tok0, ctx0)

    # delete_cache: Gradio's copies of downloaded run files go after an hour too
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        page = SimpleNamespace(story_state=gr.State(v0.state), run_state=gr.State(None))
        gr.Markdown(f"# {TITLE}: blank out any span, pick an order, watch A3 fill it\n"
                    "A3 (any-order any-subset autoregression, arXiv 2601.13228) fills blanks one *group* "
                    "of tokens at a time, in any order you choose, with every token's probability on screen.")
        page.model_md = gr.Markdown(model_note(default.key), elem_id="model-note")
        with gr.Row():
            with gr.Column(scale=3):
                story_column(page, v0, examples)
            with gr.Column(scale=2):
                controls_column(page, menu, default.key)
        with gr.Tabs():
            result_tab(page)
            page.cmp = compare_tab.build_layout()
            with gr.Tab("How it works"):
                gr.Markdown(HOW)

        story_events.wire(page, examples)
        run_events.wire(page)
        compare_tab.wire(page.cmp, page.template, page.model_dd, page.story_state,
                         [page.temperature, page.top_k, page.top_p, page.seed], page.speed)
        wire_toggles(demo, page)
        demo.load(on_page_load, None, [page.model_dd, page.model_md], api_visibility="private")
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo


def story_column(page: SimpleNamespace, v0: story.StoryView, examples: list[tuple[str, str]]) -> None:
    """Examples, the blank editor and its helpers, the story as text, Fill/Stop and the animation."""
    page.ex_ds = gr.Dataset(components=["textbox"], samples=[[t] for _, t in examples],
                            sample_labels=[t for t, _ in examples], type="index",
                            label="Example stories (click one)", elem_id="examples")
    page.editor = StoryEditor(
        v0.editor, interactive=True, color_map=render.EDITOR_COLORS, combine_adjacent=False,
        show_legend=False, label="Story: select text to blank it · click a blank to type its "
        "length · × undoes it", elem_id="story-editor")
    page.story_info = gr.Markdown(v0.info, elem_id="story-info")
    with gr.Row():
        page.sent_btn = gr.Button("Blank a random sentence", size="sm", elem_id="blank-sentence")
        page.words_btn = gr.Button("Blank 15% of the words", size="sm", elem_id="blank-words")
        page.restore_btn = gr.Button("Restore blanked text", size="sm", elem_id="restore")
    with gr.Accordion("Story as text ([[N]] = a blank of N tokens), blanks table, blank options",
                      open=False, elem_id="text-accordion"):
        page.template = gr.Textbox(v0.template, lines=5, max_lines=20, label="Story as text: [[N]] is a "
                                   "blank of N tokens", elem_id="template")
        page.blanks_df = gr.Dataframe(
            v0.table, headers=["#", "tokens", "text before it", "original", "group (custom)"],
            datatype=["number", "str", "str", "str", "number"], static_columns=[0, 1, 2, 3],
            interactive=True, label="Blanks: type group numbers here to set a custom order",
            max_height=220, elem_id="blanks-table")
        with gr.Row():
            page.frac_sl = Slider(*LIMITS["fraction"], value=0.15, step=0.05, label="fraction of words to blank")
            page.new_len = Number(0, minimum=LIMITS["new_length"][0], maximum=LIMITS["new_length"][1], precision=0,
                                  label="new blank length (0 = tokens of the selected text)", elem_id="new-length")
            page.choose_len = gr.Checkbox(False, label="let the model choose the length of new blanks ([[?]])",
                                          elem_id="choose-length")
    with gr.Row():
        page.run_btn = gr.Button("Fill the blanks", variant="primary", elem_id="run")
        page.stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
    page.caption = gr.Markdown("Press **Fill the blanks** to run.", elem_id="caption", elem_classes=["caption"])
    page.result = gr.HighlightedText([], color_map=render.COLOR_MAP, show_legend=True,
                                     combine_adjacent=False, label="Filling", elem_id="result")
    page.replay_sl = Slider(0, 1, value=0, step=1, label="Replay: scrub through the steps",
                            visible=False, elem_id="replay")
    page.status = gr.Markdown("", elem_id="status")
    with gr.Accordion("Candidates, ranked (more than one candidate, or a [[?]] blank)", open=True,
                      elem_id="candidates"):
        page.cands_df = gr.Dataframe(headers=["#", "fill", "tokens", "made by", "score", "log p after the blank",
                                              "log p fill | both sides"],
                                     datatype=["number", "str", "number", "str", "number", "number", "number"],
                                     interactive=False, wrap=True, max_height=300, elem_id="cands-table")
        with gr.Row():
            page.cand_pick = Dropdown([], value=None, label="Candidate", interactive=False, scale=3,
                                      elem_id="cand-pick")
            page.show_cand = gr.Button("Show it", size="sm", scale=1, elem_id="show-cand")
            page.use_cand = gr.Button("Put it into the story", size="sm", scale=1, elem_id="use-cand")


def controls_column(page: SimpleNamespace, menu: list, default_key: str) -> None:
    """Model, order, group size / k, threshold, custom order, sampling, seed, animation speed; each
    request widget starts at the RunRequest's default."""
    d = RunRequest()
    page.model_dd = Dropdown([(e.label, e.key) for e in menu], value=default_key, label="Model",
                             elem_id="model")
    page.strategy = Dropdown(STRATEGY_CHOICES, value=d.strategy, label="Order", elem_id="strategy")
    page.group_size = Slider(*LIMITS["group_size"], value=d.group_size, step=1, label="Group size (tokens per step; "
                             "dynamic: k per step)", elem_id="group-size")
    page.threshold = Slider(*LIMITS["threshold"], value=d.threshold or 0, step=0.05, label="Dynamic only: probability "
                            "threshold (0 = off, use k)", elem_id="threshold")
    page.custom_order = gr.Textbox(d.custom_order, label="Custom order: one group number per blank, e.g. 2 1 3",
                                   placeholder="2 1 3", elem_id="custom-order")
    with gr.Accordion("Sampling", open=True):
        page.temperature = Slider(*LIMITS["temperature"], value=d.temperature, step=0.05, label="Temperature (0 = greedy)",
                                  elem_id="temperature")
        page.top_k = Slider(*LIMITS["top_k"], value=d.top_k, step=1, label="Top-k (0 = off)", elem_id="top-k")
        page.top_p = Slider(*LIMITS["top_p"], value=d.top_p, step=0.05, label="Top-p (1 = off)", elem_id="top-p")
        with gr.Row():
            page.seed = gr.Textbox(str(d.seed), label="Seed", elem_id="seed", scale=3)
            page.dice = gr.Button("Random seed", size="sm", scale=1, elem_id="dice")
    with gr.Accordion("Candidates", open=True):
        page.n_cands = Slider(*LIMITS["candidates"], value=d.candidates, step=1,
                              label="Candidates (1 = your settings only; more are ranked, the best is shown)",
                              elem_id="n-cands")
        page.pool = Radio([("other orders and group sizes", "orders"), ("samples at temperature 0.8", "samples")],
                             value=d.pool, label="Other candidates come from", elem_id="pool")
    page.speed = Slider(0, 1, value=0.15, step=0.05, label="Animation: seconds per step (0 = instant)",
                        elem_id="speed")


def result_tab(page: SimpleNamespace) -> None:
    """"Plots and numbers": stats, the filled text, both plots, replay, download and upload."""
    with gr.Tab("Plots and numbers", id="result-tab"):
        with gr.Row():
            page.stats_df = gr.Dataframe(headers=["", "this run"], datatype=["str", "str"], interactive=False,
                                         label="Speed and likelihood", elem_id="stats", wrap=True)
            page.filled = gr.Textbox(label="Filled story (plain text)", lines=6, interactive=False,
                                     buttons=["copy"], elem_id="filled")
        page.order_plot = gr.Plot(label="Decoding order", elem_id="order-plot")
        page.token_plot = gr.Plot(label="Token probabilities and entropy", elem_id="token-plot")
        with gr.Row():
            page.replay_btn = gr.Button("Replay the animation", elem_id="replay-btn")
            page.download = gr.DownloadButton("Download run (JSON)", value=None, interactive=False,
                                              elem_id="download")
            page.upload = gr.UploadButton("Load a run (JSON)", file_types=[".json"], type="binary",
                                          elem_id="upload")


def wire_toggles(demo: gr.Blocks, page: SimpleNamespace) -> None:
    """The threshold is for dynamic orders only; the custom-order box shows for the custom order."""
    def toggle(strat):
        return gr.update(interactive=strat in DYNAMIC_ORDERS), gr.update(visible=strat == "custom")

    pairs = [(page.strategy, page.threshold, page.custom_order)] + [(s[0], s[2], s[3]) for s in page.cmp.sides]
    for strat, thr, custom in pairs:
        strat.change(toggle, strat, [thr, custom], show_progress="hidden", api_visibility="private")
        demo.load(toggle, strat, [thr, custom], api_visibility="private")


def on_page_load():
    """Each new page gets the menu as it is now: once the flagship's base has arrived, it is the default."""
    menu = model_menu.available_models()
    return (gr.update(choices=[(e.label, e.key) for e in menu], value=menu[0].key),
            model_menu.model_note(menu[0].key))


def launch_kwargs() -> dict:
    """css/theme go to launch() in Gradio 6; host and port come from GRADIO_SERVER_NAME/PORT."""
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
    return {"css": CSS, "theme": gr.themes.Soft(primary_hue="indigo"), "max_file_size": "25mb",
            "server_name": host}
