"""Pure plotly figures of a run record (run_file.py). No Gradio, no model.

    order_figure(rec, k)   decoding-order map: which step filled which position (steps after k
                           greyed out, so the replay slider can scrub through it)
    token_figure(rec)      chosen-token probability and entropy of every generated token, in text
                           order, with the top-k alternatives on hover
A blank the model ended itself is drawn as decoded (slot positions), without its empty slots.
Token texts go into hover templates as data (`customdata`), with the characters plotly treats
as markup (<, >, &) escaped, so a token can never inject HTML into a tooltip.
"""
from __future__ import annotations

import html
import math

import plotly.graph_objects as go

from .render import BIN_COLORS, BINS, NEW_COLORS, prob_bin
from .run_file import ended_slots

FONT = dict(family="system-ui, sans-serif", size=12)
PROB_SCALE = [[0.0, NEW_COLORS[0]], [0.3, NEW_COLORS[1]], [0.6, NEW_COLORS[2]], [0.9, NEW_COLORS[3]],
              [1.0, NEW_COLORS[4]]]


def _show(tok: str) -> str:
    """A token as a readable, inert label: whitespace made visible, markup escaped."""
    vis = tok.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"
    return html.escape(vis, quote=False)


def _alts(alts: list) -> str:
    return "<br>".join(f"{_show(t)}  {p:.3f}" for t, p in alts) or "(none recorded)"


def _tokens(rec: dict) -> list[dict]:
    """Every generated token, in text order: pos, tok, prob, entropy, step, alternatives (not the
    empty token that ended a fill the model ended itself)."""
    gone = ended_slots(rec)
    rows = [dict(pos=p, tok=t, prob=pr, ent=e, step=s["index"] + 1, alts=a)
            for s in rec["steps"]
            for p, t, pr, e, a in zip(s["positions"], s["tokens"], s["probs"], s["entropy"],
                                      s["alternatives"] or [[]] * len(s["positions"])) if p not in gone]
    return sorted(rows, key=lambda r: r["pos"])


def _layout(title: str, height: int, **axes) -> dict:
    """The layout every figure shares, with `axes` (xaxis=..., yaxis2=...) on the shared grid style."""
    grid = dict(showgrid=True, gridcolor="#eef2f7", zeroline=False)
    return dict(title=dict(text=title, x=0.01, font=dict(size=14)), height=height, font=FONT,
                margin=dict(l=60, r=20, t=50, b=50), plot_bgcolor="white", showlegend=False,
                hoverlabel=dict(font=dict(family="monospace", size=12)),
                **{name: {**grid, **ax} for name, ax in axes.items()})


# Figures are built as one dict and validated once by go.Figure: an eighth of the time of building
# them with update_* calls, which a busy server pays on every run (measured: 40 ms -> 5 ms a run).

def order_figure(rec: dict, k: int | None = None) -> go.Figure:
    """Scatter of (position, step): one square per generated token, coloured by its probability."""
    rows = _tokens(rec)
    n = len(rec["steps"])
    k = n if k is None else max(0, min(int(k), n))
    data = []
    for shown in (False, True):
        sel = [r for r in rows if (r["step"] <= k) == shown]
        if not sel:
            continue
        marker = dict(symbol="square", size=11, line=dict(width=1, color="#334155"),
                      color=[r["prob"] for r in sel] if shown else "#e2e8f0", colorscale=PROB_SCALE, cmin=0, cmax=1)
        if shown:
            marker["colorbar"] = dict(title=dict(text="p"), thickness=10, len=0.8)
        data.append(dict(
            type="scatter", x=[r["pos"] for r in sel], y=[r["step"] for r in sel], mode="markers", marker=marker,
            customdata=[[_show(r["tok"]), r["prob"], _alts(r["alts"])] for r in sel],
            hovertemplate=("position %{x} · step %{y}<br>token <b>%{customdata[0]}</b> p=%{customdata[1]:.3f}"
                           "<br>top alternatives:<br>%{customdata[2]}<extra></extra>"),
        ))
    x_axis = dict(title=dict(text="position in the sequence (BOS = 0)"), tickformat="d")
    y_axis = dict(title=dict(text="step"), autorange="reversed", rangemode="tozero", tickformat="d")
    span = (max(r["pos"] for r in rows) - min(r["pos"] for r in rows)) if rows else 0
    if span <= 24:  # few positions: one tick each, no half positions
        x_axis["dtick"] = 1
    if n <= 24:
        y_axis["dtick"] = 1
    strategy = rec["settings"].get("strategy", "")
    layout = _layout(f"Decoding order — {strategy.replace('_', ' ')}: which step filled which position"
                     + (f" (step {k} of {n})" if k < n else ""), 340, xaxis=x_axis, yaxis=y_axis)
    if 0 < k < n:  # the replay slider's position
        layout["shapes"] = [dict(type="line", xref="x domain", x0=0, x1=1, yref="y", y0=k + 0.5, y1=k + 0.5,
                                 line=dict(color="#64748b", dash="dot", width=1))]
    return go.Figure(dict(data=data, layout=layout))


def token_figure(rec: dict) -> go.Figure:
    """Two rows over the generated tokens in text order: chosen-token probability; entropy (the
    layout of plotly's make_subplots(rows=2, shared_xaxes=True), written out)."""
    rows = _tokens(rec)
    x = list(range(len(rows)))
    ticks = [f"{_show(r['tok'])}" for r in rows]
    custom = [[_show(r["tok"]), r["pos"], r["step"], r["prob"], r["ent"], _alts(r["alts"])] for r in rows]
    hover = ("token <b>%{customdata[0]}</b> at position %{customdata[1]}, step %{customdata[2]}"
             "<br>p=%{customdata[3]:.3f} · entropy %{customdata[4]:.2f} nats"
             "<br>top alternatives:<br>%{customdata[5]}<extra></extra>")
    colors = [dict(zip([b for _, b in BINS], NEW_COLORS))[prob_bin(r["prob"])] for r in rows]
    data = [dict(type="bar", x=x, y=[r["prob"] for r in rows], marker=dict(color=colors), customdata=custom,
                 hovertemplate=hover, xaxis="x", yaxis="y"),
            dict(type="scatter", x=x, y=[r["ent"] for r in rows], mode="lines+markers", customdata=custom,
                 line=dict(color="#6366f1"), marker=dict(size=6), hovertemplate=hover, xaxis="x2", yaxis="y2")]
    # log scale: an untrained model's 1/V and a trained model's 0.9 are both readable
    low = min([r["prob"] for r in rows if r["prob"] > 0] + [1e-3])
    step = max(1, len(x) // 40)  # keep tick labels readable on long runs
    titles = [dict(text=t, x=0.5, y=y, xref="paper", yref="paper", xanchor="center", yanchor="bottom",
                   showarrow=False, font=dict(size=12))
              for t, y in (("probability of the chosen token (log scale)", 1.0),
                           ("entropy of the distribution (nats)", 0.46))]
    layout = _layout("Every generated token, in text order (hover for the top alternatives)", 420,
                     xaxis=dict(anchor="y", domain=[0.0, 1.0], matches="x2", showticklabels=False),
                     yaxis=dict(anchor="x", domain=[0.54, 1.0], type="log", dtick=1,
                                range=[math.floor(math.log10(low)) - 0.1, 0.05]),
                     xaxis2=dict(anchor="y2", domain=[0.0, 1.0], tickmode="array", tickvals=x[::step],
                                 ticktext=ticks[::step], tickangle=-60),
                     yaxis2=dict(anchor="x2", domain=[0.0, 0.46], rangemode="tozero"))
    layout["annotations"] = titles
    return go.Figure(dict(data=data, layout=layout))


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=html.escape(message), showarrow=False, font=dict(size=13, color="#64748b"),
                       x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(_layout("", 200, xaxis=dict(visible=False), yaxis=dict(visible=False)))
    return fig


__all__ = ["order_figure", "token_figure", "empty_figure", "BIN_COLORS"]
