"""Pure plotly figures of a run record (run_file.py). No Gradio, no model.

    order_figure(rec, k)   decoding-order map: which step filled which position (steps after k
                           greyed out, so the replay slider can scrub through it)
    token_figure(rec)      chosen-token probability and entropy of every generated token, in text
                           order, with the top-k alternatives on hover
Token texts go into hover templates as data (`customdata`), with the characters plotly treats
as markup (<, >, &) escaped, so a token can never inject HTML into a tooltip.
"""
from __future__ import annotations

import html
import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .render import BIN_COLORS, BINS, NEW_COLORS, prob_bin

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
    """Every generated token, in text order: pos, tok, prob, entropy, step, alternatives."""
    rows = [dict(pos=p, tok=t, prob=pr, ent=e, step=s["index"] + 1, alts=a)
            for s in rec["steps"]
            for p, t, pr, e, a in zip(s["positions"], s["tokens"], s["probs"], s["entropy"],
                                      s["alternatives"] or [[]] * len(s["positions"]))]
    return sorted(rows, key=lambda r: r["pos"])


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=14)), height=height, font=FONT,
                      margin=dict(l=60, r=20, t=50, b=50), plot_bgcolor="white", showlegend=False,
                      hoverlabel=dict(font=dict(family="monospace", size=12)))
    fig.update_xaxes(showgrid=True, gridcolor="#eef2f7", zeroline=False)
    fig.update_yaxes(showgrid=True, gridcolor="#eef2f7", zeroline=False)
    return fig


def order_figure(rec: dict, k: int | None = None) -> go.Figure:
    """Scatter of (position, step): one square per generated token, coloured by its probability."""
    rows = _tokens(rec)
    n = len(rec["steps"])
    k = n if k is None else max(0, min(int(k), n))
    fig = go.Figure()
    for shown in (False, True):
        sel = [r for r in rows if (r["step"] <= k) == shown]
        if not sel:
            continue
        fig.add_trace(go.Scatter(
            x=[r["pos"] for r in sel], y=[r["step"] for r in sel], mode="markers",
            marker=dict(symbol="square", size=11, line=dict(width=1, color="#334155"),
                        color=[r["prob"] for r in sel] if shown else "#e2e8f0",
                        colorscale=PROB_SCALE, cmin=0, cmax=1,
                        colorbar=dict(title="p", thickness=10, len=0.8) if shown else None),
            customdata=[[_show(r["tok"]), r["prob"], _alts(r["alts"])] for r in sel],
            hovertemplate=("position %{x} · step %{y}<br>token <b>%{customdata[0]}</b> p=%{customdata[1]:.3f}"
                           "<br>top alternatives:<br>%{customdata[2]}<extra></extra>"),
        ))
    if 0 < k < n:
        fig.add_hline(y=k + 0.5, line=dict(color="#64748b", dash="dot", width=1))
    fig.update_yaxes(title="step", autorange="reversed", rangemode="tozero", tickformat="d")
    fig.update_xaxes(title="position in the sequence (BOS = 0)", tickformat="d")
    span = (max(r["pos"] for r in rows) - min(r["pos"] for r in rows)) if rows else 0
    if span <= 24:  # few positions: one tick each, no half positions
        fig.update_xaxes(dtick=1)
    if n <= 24:
        fig.update_yaxes(dtick=1)
    strategy = rec["settings"].get("strategy", "")
    return _layout(fig, f"Decoding order — {strategy.replace('_', ' ')}: which step filled which position"
                   + (f" (step {k} of {n})" if k < n else ""), 340)


def token_figure(rec: dict) -> go.Figure:
    """Two rows over the generated tokens in text order: chosen-token probability; entropy."""
    rows = _tokens(rec)
    x = list(range(len(rows)))
    ticks = [f"{_show(r['tok'])}" for r in rows]
    custom = [[_show(r["tok"]), r["pos"], r["step"], r["prob"], r["ent"], _alts(r["alts"])] for r in rows]
    hover = ("token <b>%{customdata[0]}</b> at position %{customdata[1]}, step %{customdata[2]}"
             "<br>p=%{customdata[3]:.3f} · entropy %{customdata[4]:.2f} nats"
             "<br>top alternatives:<br>%{customdata[5]}<extra></extra>")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("probability of the chosen token (log scale)", "entropy of the distribution (nats)"))
    colors = [dict(zip([b for _, b in BINS], NEW_COLORS))[prob_bin(r["prob"])] for r in rows]
    fig.add_trace(go.Bar(x=x, y=[r["prob"] for r in rows], marker_color=colors, customdata=custom,
                         hovertemplate=hover), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=[r["ent"] for r in rows], mode="lines+markers", customdata=custom,
                             line=dict(color="#6366f1"), marker=dict(size=6), hovertemplate=hover),
                  row=2, col=1)
    # log scale: an untrained model's 1/V and a trained model's 0.9 are both readable
    low = min([r["prob"] for r in rows if r["prob"] > 0] + [1e-3])
    fig.update_yaxes(type="log", range=[math.floor(math.log10(low)) - 0.1, 0.05], dtick=1, row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=2, col=1)
    step = max(1, len(x) // 40)  # keep tick labels readable on long runs
    fig.update_xaxes(tickmode="array", tickvals=x[::step], ticktext=ticks[::step], tickangle=-60, row=2, col=1)
    fig.update_annotations(font=dict(size=12))
    return _layout(fig, "Every generated token, in text order (hover for the top alternatives)", 420)


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=html.escape(message), showarrow=False, font=dict(size=13, color="#64748b"),
                       x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "", 200)


__all__ = ["order_figure", "token_figure", "empty_figure", "BIN_COLORS"]
