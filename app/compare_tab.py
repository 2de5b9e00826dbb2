"""The "Compare two orders" tab: its layout (two columns, orders A and B) and its Compare/Stop
events. Both orders run the main tab's story, model and sampling settings; the two runs are computed
first, then animated in lockstep and scored side by side.
"""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr

from . import figures, render
from .compute import execute
from .request import LIMITS, Dropdown, RunRequest, Slider, prepare
from .run_events import frame_steps, paced, preview
from .texts import STRATEGY_CHOICES, error_md, failure_md


class CompareTab(NamedTuple):
    """The tab's components; each side is (order, group size, threshold, custom order, caption,
    result, plot) for A then B."""
    sides: list
    cmp_btn: gr.Button
    cmp_stop: gr.Button
    cmp_status: gr.Markdown
    cmp_df: gr.Dataframe


def build_layout() -> CompareTab:
    """Lay the tab out; call inside the page's gr.Tabs()."""
    with gr.Tab("Compare two orders", id="compare-tab"):
        gr.Markdown("The same story, blanks, model and sampling settings as above, under two orders.")
        with gr.Row():
            sides = []
            for name, strat in (("A", "left_to_right"), ("B", "confidence")):
                with gr.Column():
                    s_dd = Dropdown(STRATEGY_CHOICES, value=strat, label=f"Order {name}",
                                    elem_id=f"cmp-strategy-{name}")
                    s_gs = Slider(*LIMITS["group_size"], value=1, step=1, label="Group size / k")
                    s_thr = Slider(*LIMITS["threshold"], value=0, step=0.05, label="Threshold (dynamic; 0 = off)")
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
    return CompareTab(sides, cmp_btn, cmp_stop, cmp_status, cmp_df)


def wire(tab: CompareTab, template, model_dd, story_state, sampling_inputs, speed) -> None:
    """Connect Compare and Stop; the inputs are the main tab's story, model, sampling and speed."""
    sides, cmp_btn, cmp_stop, cmp_status, cmp_df = tab
    cmp_out = [s[5] for s in sides] + [s[4] for s in sides] + [s[6] for s in sides] + [cmp_status, cmp_df]

    def run_compare(text, model, story, temperature, top_k, top_p, seed, speed, order_a, group_size_a,
                    threshold_a, custom_order_a, order_b, group_size_b, threshold_b, custom_order_b):
        """Fill `text` under order A and order B (same model, sampling and seed), animate both in
        lockstep, and score them side by side."""
        skip = (gr.skip(),) * len(cmp_out)
        orders = ((order_a, group_size_a, threshold_a, custom_order_a),
                  (order_b, group_size_b, threshold_b, custom_order_b))
        runs = []
        try:
            for order, group_size, threshold, custom_order in orders:
                request = RunRequest.check(text, order, group_size, threshold, custom_order, temperature, top_k,
                                           top_p, seed)
                runs.append(prepare(request, model, story, plan=False))
        except ValueError as e:
            yield skip[:-2] + (error_md(f"order {'AB'[len(runs)]}: {e}"), gr.skip())
            return
        previews = [preview(r) for r in runs]
        yield tuple(render.frame_spans(p, 0) for p in previews) + tuple(
            render.md_escape(render.caption(p, 0)) for p in previews) + skip[4:6] + ("Computing…", gr.skip())
        try:
            done = [execute(r) for r in runs]
        except Exception as e:  # noqa: BLE001 — say so on the page; the page goes on
            yield skip[:-2] + (failure_md(e), gr.skip())
            return
        n = max(len(r["steps"]) for r in done)
        for k in paced(frame_steps(n), speed):
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
