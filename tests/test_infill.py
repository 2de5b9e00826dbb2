"""model/infill.py: the [[N]] syntax, character-span blanks, helpers, encoding and its refusals."""
import random

import pytest

from model.core.infill import (Blank, blank_char_spans, blank_fraction_of_words, blank_random_sentence, blanks_of,
                          clean_text, custom_groups, encode_segments, format_template, parse_custom_order,
                          parse_template, sentence_spans, token_counter)

STORY = ("It was a fine morning. Elizabeth walked to the village! Did she see Mr. Darcy? "
         "No, she did not. \"Oh!\" said she, and went home.")


@pytest.fixture(scope="module")
def tok():
    from model.corpus.austen import train_tokenizer
    return train_tokenizer([STORY, "The cat sat on the mat. The dog sat on the log."] * 3, vocab_size=300)


def test_parse_and_format_round_trip():
    segs = parse_template("The cat [[4]] on the mat.[[ 2 ]]")
    assert segs == ["The cat ", Blank(4), " on the mat.", Blank(2)]
    assert format_template(segs) == "The cat [[4]] on the mat.[[2]]"


@pytest.mark.parametrize("bad, says", [("a [[x]] b", "number of tokens"), ("a [[0]] b", "1 to"),
                                       ("a [[-3]] b", "number of tokens"), ("a [[99999]] b", "1 to"),
                                       ("a [[]] b", "number of tokens")])
def test_parse_refuses_bad_blanks_with_a_message(bad, says):
    with pytest.raises(ValueError, match=says):
        parse_template(bad)


def test_unclosed_brackets_are_text():
    assert parse_template("a [[3 b") == ["a [[3 b"]


def test_control_characters_are_stripped_not_markup():
    text, n = clean_text("a\x00b\x1b[31mc\u202ed\r\ne\tf <b>g</b>")
    assert text == "ab[31mcd\ne\tf <b>g</b>" and n == 3, (text, n)
    assert parse_template("x\x07 [[2]]") == ["x ", Blank(2)]


def test_encode_gives_bos_mask_and_layout(tok):
    enc = encode_segments(tok, parse_template("The cat [[3]] on the mat."), bos_id=0, max_positions=64)
    assert enc.input_ids[0] == 0 and not enc.blank_mask[0]
    assert sum(enc.blank_mask) == 3
    kinds = [p.kind for p in enc.layout]
    assert kinds == ["text", "blank", "text"]
    blank = enc.layout[1]
    assert blank.text == " ", "the space before a blank belongs to the blank"
    assert enc.layout[0].text == "The cat"
    assert all(enc.blank_mask[p] for p in blank.positions)
    # visible tokens are exactly the tokenizer's tokens of the visible text
    vis = [i for i, m in zip(enc.input_ids[1:], enc.blank_mask[1:]) if not m]
    assert vis == tok.encode("The cat", add_special_tokens=False) + tok.encode(" on the mat.", add_special_tokens=False)


@pytest.mark.parametrize("template, says", [("", "empty"), ("   ", "empty"), ("no blanks here", "no blank"),
                                            ("[[3]]", "everything is blank"), (" [[3]] [[2]] ", "everything is blank"),
                                            ("a [[600]] b", "context")])
def test_encode_refusals(tok, template, says):
    with pytest.raises(ValueError, match=says):
        encode_segments(tok, parse_template(template), bos_id=0, max_positions=512)


def test_total_length_over_context_is_refused(tok):
    with pytest.raises(ValueError, match="context"):
        encode_segments(tok, parse_template("word " * 60 + "[[5]]"), bos_id=0, max_positions=40)


def test_char_span_blank_counts_tokens_with_its_space(tok):
    text = "The cat sat on the mat."
    count = token_counter(tok)
    segs = blank_char_spans(text, [(8, 11)], count)
    assert segs == ["The cat ", Blank(count(" sat")), " on the mat."]
    assert segs[1].original == "sat"
    # surrounding whitespace in a selection stays visible; a chosen length wins
    segs = blank_char_spans(text, [(7, 12)], count, lengths=[5])
    assert format_template(segs) == "The cat [[5]] on the mat."
    with pytest.raises(ValueError, match="whitespace"):
        blank_char_spans(text, [(3, 4)], count)
    with pytest.raises(ValueError, match="overlaps"):
        blank_char_spans(text, [(0, 5), (3, 8)], count)


def test_sentences_respect_abbreviations_and_quotes():
    got = [STORY[a:b] for a, b in sentence_spans(STORY)]
    assert got == ["It was a fine morning.", "Elizabeth walked to the village!", "Did she see Mr. Darcy?",
                   "No, she did not.", "\"Oh!\" said she, and went home."]


def test_blank_random_sentence_is_seeded_and_keeps_the_rest(tok):
    a = blank_random_sentence([STORY], random.Random(3), token_counter(tok))
    b = blank_random_sentence([STORY], random.Random(3), token_counter(tok))
    assert a == b and len(blanks_of(a)) == 1
    orig = blanks_of(a)[0].original
    assert orig in [STORY[x:y] for x, y in sentence_spans(STORY)]
    assert format_template(a).replace(f"[[{blanks_of(a)[0].length}]]", orig) == STORY


def test_blank_fraction_of_words(tok):
    segs = blank_fraction_of_words([STORY], 0.15, random.Random(0), token_counter(tok))
    n_words = len(STORY.split())
    blanked = sum(len(b.original.split()) for b in blanks_of(segs))
    assert 1 <= blanked <= round(0.15 * n_words) + 1
    # existing blanks are left alone
    again = blank_fraction_of_words(segs, 0.15, random.Random(1), token_counter(tok))
    assert len(blanks_of(again)) >= len(blanks_of(segs))
    with pytest.raises(ValueError):
        blank_fraction_of_words([STORY], 1.5, random.Random(0), token_counter(tok))


def test_custom_order_parsing_and_groups():
    assert parse_custom_order("2, 1 3", 3) == [2, 1, 3]
    for bad, says in (("", "empty"), ("1 x", "whole numbers"), ("1 2", "3 blank"), ("0 1 2", "between")):
        with pytest.raises(ValueError, match=says):
            parse_custom_order(bad, 3)
    spans = [[1, 2, 3], [7, 8]]
    assert custom_groups(spans, [2, 1], 1) == [[7], [8], [1], [2], [3]]
    assert custom_groups(spans, [1, 1], 2) == [[1, 2, 7, 8], [3]]


def test_blanks_whose_length_the_model_chooses():
    """[[?]] and [[a-b]] parse to a Blank with its range, round-trip through format_template, and
    reach the layout; inverted, open, too wide and repeated ranges are refused with a message."""
    from model.core.infill import MAX_CHOSEN_TOKENS, UNKNOWN_RANGE
    segs = parse_template("The cat [[?]] on the mat, [[2]]")
    assert segs[1].choose == UNKNOWN_RANGE and UNKNOWN_RANGE[0] <= segs[1].length <= UNKNOWN_RANGE[1], \
        f"[[?]] should get the default range and a length inside it: {segs[1]}"
    bad = [("[[?]] [[?]]", "only one blank"), ("a [[9-3]]", "inverted"), ("a [[3-]]", "both ends"),
           ("a [[0-5]]", f"between 1 and {MAX_CHOSEN_TOKENS}"), (f"a [[2-{MAX_CHOSEN_TOKENS + 1}]]", "narrow the range")]
    with pytest.raises(ValueError, match="only one blank"):
        parse_template("The cat [[?]] on the mat, [[2-6]] and [[3]]")
    for text, msg in bad:
        with pytest.raises(ValueError, match=msg):
            parse_template(text)
    ok = parse_template("a [[ 2 - 6 ]] b")
    assert ok[1].choose == (2, 6) and format_template(ok) == "a [[2-6]] b", f"a range round-trips: {ok}"
    assert format_template(parse_template("x [[?]] y")) == "x [[?]] y", "[[?]] round-trips"
