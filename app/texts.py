"""What the page says and how it looks: the title, the CSS, the "How it works" help, the order
menu's labels, making user or model text inert in Markdown (md_escape), and the short notes shown
on the page (error messages, replay notes). Nothing here imports another module of the app,
touches Gradio events or loads a model; the UI modules show these. The orders are the core's
(decode.STRATEGIES): their labels are made from their names, never spelled again here.
"""
from __future__ import annotations

import logging
import re

from model.core.decode import DYNAMIC_ORDERS, STRATEGIES

log = logging.getLogger("a3studio")
TITLE = "A3 Studio"


def order_label(name: str) -> str:
    """How the page names an order of the core: 'left-to-right', 'dynamic: confidence'."""
    if name in DYNAMIC_ORDERS:
        return "dynamic: " + name.removeprefix("dynamic_").replace("_", " ")
    return name.replace("_", "-")


SURROGATE_RE = re.compile("[\ud800-\udfff]")


def md_escape(text: str) -> str:
    """Make user or model text inert inside gr.Markdown (no markup, no HTML, no links), and
    sendable: a lone surrogate cannot be encoded for the page, so it becomes U+FFFD."""
    text = SURROGATE_RE.sub("\ufffd", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_{}\[\]()#+!|~$])", r"\\\1", text)


STRATEGY_CHOICES = [(order_label(s), s) for s in STRATEGIES]  # the order menu, in the core's order

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
removed; markup is shown as text. `[[?]]` (or `[[3-12]]`) leaves the blank's length to the model:
a model that learned where a fill ends gets a row of slots and ends the fill itself (the unused
slots close on screen, and the result says how sure it was); any other model tries several
lengths and the ranking picks one.

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


def model_note_for_file(rec: dict) -> str:
    label = rec.get("model", {}).get("label") or rec.get("model", {}).get("key") or "an unknown model"
    return (f"Replaying a run made with {md_escape(str(label))}, which is not loaded here; the replay "
            "uses the recorded steps only.")


def error_md(msg: str) -> str:
    return f"⚠️ {md_escape(msg)}"


def failure_text(err: Exception) -> str:
    """A refused request (ValueError) says what to change; anything else is logged and reported
    by its kind only (its text may hold server paths)."""
    if isinstance(err, ValueError):
        return str(err)
    log.exception("decoding failed")
    return f"decoding failed on the server ({type(err).__name__}); try again or pick other settings"


def failure_md(err: Exception) -> str:
    """failure_text for the page's status line."""
    return error_md(failure_text(err))
