"""The story area's events: typing, examples, selections in the blank editor, the helpers, the
blanks table, the model menu. Every event returns the same five outputs (template, editor, blanks
table, info line, per-user story state), computed by story.view; the editing rules are story.py's.
A value only an API client can send (an example number "abc", a model key that is a path, a
malformed editor piece) gets a message on the info line, like any other mistake.
"""
from __future__ import annotations

import random
from types import SimpleNamespace

import gradio as gr

from . import model_menu, render, story
from .request import LIMITS, float_in, int_in, text_in
from .model_menu import model_note
from .texts import error_md

SKIP5 = (gr.skip(),) * 5


def refuse(err: ValueError) -> tuple:
    """The five outputs for a refused request: only the info line changes."""
    return gr.skip(), gr.skip(), gr.skip(), error_md(str(err)), gr.skip()


def show(template_text, state, key, custom="", note=""):
    """The five story outputs for a template (story.view never raises: problems go to the info line)."""
    try:
        tok, ctx = model_menu.tokenizer(key)  # through the menu: an unknown key is refused by name
        custom = text_in(custom, "the custom order")
    except ValueError as e:
        return refuse(e)
    v = story.view(template_text, state if isinstance(state, dict) else {}, tok, ctx, custom, note)
    return v.template, gr.skip() if v.editor is None else v.editor, v.table, v.info, v.state


def show_segments(segments, key, custom, note=""):
    st = story.state_of(segments)
    return show(st["template"], st, key, custom, note)


def on_typed(text, state, model, custom_order):
    """The story area for `text` as typed ([[N]]: a blank of N tokens)."""
    state = dict(state or {})
    old = state.get("originals") or []
    try:  # typing elsewhere keeps what the blanks remember, if their number is unchanged
        clean = text_in(text, "the text")
        n = len(story.blanks_of(story.parse_template(clean)))
        if n == len(old):
            state["template"] = clean
    except ValueError:
        pass
    return show(text, state, model, custom_order)


def on_editor(editor, state, new_length, model, custom_order, choose_length=False):
    """The blank editor's pieces read back (story.from_editor): new blanks, resized or undone ones."""
    try:
        tok, _ = model_menu.tokenizer(model)
        n = int_in(new_length if new_length not in (None, "") else 0, "the new blank length", *LIMITS["new_length"])
        got = story.from_editor(editor, state or {}, tok, n or None, choose_length=choose_length is True)
    except ValueError as e:
        return refuse(e)
    if got is None:  # our own render coming back: nothing to do
        return SKIP5
    segments, note = got
    return show_segments(segments, model, custom_order, note)


def helper(kind: str):
    """The event of one helper button: blank a sentence, blank a fraction of the words, restore."""
    def fn(text, state, fraction, model, custom_order):
        try:
            tok, _ = model_menu.tokenizer(model)
            text = text_in(text, "the text")
            if kind == "sentence":
                segments = story.random_sentence(text, state or {}, tok, random.Random())
            elif kind == "words":
                f = float_in(fraction, "the fraction of words to blank", *LIMITS["fraction"])
                segments = story.fraction_of_words(text, state or {}, f, tok, random.Random())
            else:
                segments, n = story.restore(text, state or {})
                if not n:
                    return show(text, state, model, custom_order,
                                "No blank remembers its original text (blanks typed as [[N]] do not).")
        except ValueError as e:
            return refuse(e)
        return show_segments(segments, model, custom_order)
    fn.__doc__ = {"sentence": "Blank one random sentence of `text`.",
                  "words": "Blank `fraction` of the words of `text`, at random.",
                  "restore": "Put back the original text of every blank that remembers it."}[kind]
    return fn


def on_table(rows):
    """Group numbers typed in the blanks table become the custom order."""
    try:
        groups = [int(float(r[4])) for r in (rows.values.tolist() if hasattr(rows, "values") else rows)]
    except (TypeError, ValueError, IndexError, OverflowError):
        return gr.skip(), gr.skip(), error_md("group numbers in the blanks table must be whole numbers")
    return " ".join(map(str, groups)), "custom", gr.skip()


def wire(page: SimpleNamespace, examples: list[tuple[str, str]]) -> None:
    """Connect the story area's components (built by ui.story_column) to the handlers above."""
    out = [page.template, page.editor, page.blanks_df, page.story_info, page.story_state]

    def on_example(example, model, custom_order):
        """Example story number `example` (0 = the first) in the story area."""
        if not examples:
            return refuse(ValueError("this server has no example stories"))
        try:
            i = int_in(example, "the example number", 0, len(examples) - 1)
        except ValueError as e:
            return refuse(e)
        text = examples[i][1]
        return show(text, story.new_state(text), model, custom_order)

    def on_use_candidate(candidate, rec, model, custom_order):
        """Put ranked candidate number `candidate`'s fills into the story: the blanks become its text."""
        try:
            cands = rec.get("candidates") if isinstance(rec, dict) else None
            if not cands:
                raise ValueError("there are no candidates yet: run with more than one candidate, or a [[?]] blank")
            k = int_in(candidate, "the candidate number", 0, len(cands) - 1)
            text = render.filled_text(cands[k]["record"]) if "record" in cands[k] else None
            if text is None:
                raise ValueError("this run was loaded from a file: its candidates are listed, not kept; run it again")
        except ValueError as e:
            return refuse(e)
        return show(text, story.new_state(text), model, custom_order,
                    f"Candidate #{k + 1} is in the story now; blank something else to continue.")

    def on_model(key, template_text, state, custom):
        return (model_note(key),) + show(template_text, state, key, custom)

    page.template.input(on_typed, [page.template, page.story_state, page.model_dd, page.custom_order], out,
                        trigger_mode="always_last", show_progress="hidden", api_name="story")
    page.ex_ds.click(on_example, [page.ex_ds, page.model_dd, page.custom_order], out, show_progress="hidden",
                     api_name="example")
    page.editor.change(on_editor, [page.editor, page.story_state, page.new_len, page.model_dd, page.custom_order,
                                   page.choose_len],
                       out, show_progress="hidden", api_name="editor")
    helper_in = [page.template, page.story_state, page.frac_sl, page.model_dd, page.custom_order]
    page.sent_btn.click(helper("sentence"), helper_in, out, api_name="blank_sentence")
    page.words_btn.click(helper("words"), helper_in, out, api_name="blank_words")
    page.restore_btn.click(helper("restore"), helper_in, out, api_name="restore")
    page.frac_sl.change(lambda f: gr.update(value=f"Blank {round(float(f) * 100)}% of the words"), page.frac_sl,
                        page.words_btn, show_progress="hidden", api_visibility="private")
    page.use_cand.click(on_use_candidate, [page.cand_pick, page.run_state, page.model_dd, page.custom_order], out,
                        api_name="use_candidate")
    page.model_dd.change(on_model, [page.model_dd, page.template, page.story_state, page.custom_order],
                         [page.model_md] + out, api_visibility="private")
    page.blanks_df.input(on_table, page.blanks_df, [page.custom_order, page.strategy, page.story_info],
                         show_progress="hidden", api_visibility="private")
    page.custom_order.input(lambda t, s, k, c: show(t, s, k, c)[2],
                            [page.template, page.story_state, page.model_dd, page.custom_order],
                            page.blanks_df, trigger_mode="always_last", show_progress="hidden",
                            api_visibility="private")
    page.dice.click(lambda: str(random.randrange(1_000_000)), None, page.seed, api_visibility="private")
