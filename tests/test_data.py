"""Corpus layer tests: R lazy-load reader, paragraph cleaning and split, tokenizer, packing.

Everything is synthetic: a tiny R serializer below writes .rdx/.rdb files in R's format, so no
network, apt or R is needed.
"""

import bz2
import gzip
import lzma
import struct
import zlib

import pytest
import torch

from model.corpus import austen as data, rdata


# -----------------------------------------------------------------------------
# a minimal R XDR writer (the inverse of model/rdata.py for what the tests need)

def _int(v):
    return struct.pack(">i", v)


def _charsxp(s):
    if s is None:
        return _int(9) + _int(-1)  # NA_character_
    raw = s.encode("utf-8")
    level = 64 if s.isascii() else 8  # ASCII_MASK / UTF8_MASK, stored in flags >> 12
    return _int(9 | level << 12) + _int(len(raw)) + raw


class _Writer:
    def __init__(self):
        self.syms = []  # reference table, so a repeated symbol becomes a back-reference

    def sym(self, name):
        if name in self.syms:
            return _int((self.syms.index(name) + 1) << 8 | 255)  # REFSXP, packed index
        self.syms.append(name)
        return _int(1) + _charsxp(name)

    def obj(self, x):
        if isinstance(x, dict):  # named list: VECSXP + names attribute pairlist
            body = _int(19 | 1 << 9) + _int(len(x)) + b"".join(self.obj(v) for v in x.values())
            return body + _int(2 | 1 << 10) + self.sym("names") + self.obj(list(x)) + _int(254)
        if isinstance(x, bool):
            return _int(10) + _int(1) + _int(int(x))
        if isinstance(x, tuple):  # integer vector
            return _int(13) + _int(len(x)) + b"".join(_int(v) for v in x)
        return _int(16) + _int(len(x)) + b"".join(_charsxp(s) for s in x)  # character vector

    def serialize(self, x, version=3):
        head = b"X\n" + _int(version) + _int(0x040201) + _int(0x020300)
        if version == 3:
            head += _int(5) + b"UTF-8"
        return head + self.obj(x)


def _compress(raw, codec):
    if codec == "zlib":
        return struct.pack(">I", len(raw)) + zlib.compress(raw)
    if codec == "bzip2":
        return struct.pack(">I", len(raw)) + b"2" + bz2.compress(raw)
    xz = lzma.compress(raw, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 6}])
    return struct.pack(">I", len(raw)) + b"Z" + xz


def _write_lazyload(tmp_path, objects, codec):
    rdb, variables = b"", {}
    for name, value in objects.items():
        record = _compress(_Writer().serialize(value, version=2), codec)
        variables[name] = (len(rdb), len(record))
        rdb += record
    compressed = {"zlib": True, "bzip2": (2,), "xz": (3,)}[codec]
    index = {"variables": variables, "references": {}, "compressed": compressed}
    (tmp_path / "Rdata.rdb").write_bytes(rdb)
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(_Writer().serialize(index)))
    return tmp_path / "Rdata.rdx"


OBJECTS = {
    "novel": ["CHAPTER 1", "", "It is a _truth_ universally", None, "acknowledged.", "Naïve café — £5"],
    "meta": {"title": ["Emma"], "words": ["a", "b", None]},
}


@pytest.mark.parametrize("codec", ["zlib", "bzip2", "xz"])
def test_rdata_round_trip(tmp_path, codec):
    """Objects written in R's lazy-load format read back unchanged (NA -> None, UTF-8 kept)."""
    rdx = _write_lazyload(tmp_path, OBJECTS, codec)
    got = rdata.read_lazyload(rdx)
    assert got == OBJECTS, f"{codec}: read back {got!r}, wrote {OBJECTS!r}"
    assert rdata.load_object(rdx, "meta") == OBJECTS["meta"], "load_object disagrees with read_lazyload"


def test_rdata_rejects_unsupported_type():
    """An R type outside the supported set (an environment, 4) raises a ValueError naming it."""
    buf = b"X\n" + _int(2) + _int(0) + _int(0) + _int(4)
    with pytest.raises(ValueError, match="unsupported R item type 4"):
        rdata.unserialize(buf)


# -----------------------------------------------------------------------------
# paragraphs and split

def test_novel_paragraphs_cleaning():
    """Front matter, headings and end matter go; lines join; italics underscores and spacing go."""
    lines = ["EMMA", "", "By Jane Austen", "", "CHAPTER I", "", "It was _very_ fine.  She", "smiled.",
             "", "", "Chapter 2", "", "   Indented letter", "", "THE END", "", "A note."]
    got = data.novel_paragraphs(lines)
    assert got == ["It was very fine. She smiled.", "Indented letter"], f"cleaned paragraphs: {got}"


def test_split_holds_out_last_tenth_of_each_novel():
    """Every novel gives its last ceil(10%) paragraphs to eval, in order, and the rest to train."""
    novels = {name: [f"{name} {i}" for i in range(n)] for name, n in [("a", 10), ("b", 25), ("c", 7), ("d", 30)]}
    splits = data.split_novels(novels)
    for name, n_eval in [("a", 1), ("b", 3), ("c", 1), ("d", 3)]:
        held = [p for p in splits["eval"] if p.split()[0] == name]
        train = [p for p in splits["train"] if p.split()[0] == name]
        assert held == novels[name][-n_eval:], f"novel {name}: eval should be its last {n_eval}, got {held}"
        assert train + held == novels[name], f"novel {name}: train + eval should rebuild the novel in order"


# -----------------------------------------------------------------------------
# tokenizer and packing

def test_tokenizer_specials_and_round_trip(tmp_path):
    """Specials are ids 0..3, nothing is auto-added, and decode(encode(s)) == s after a reload."""
    from transformers import AutoTokenizer

    corpus = ["The cat sat on the mat.", "\"Mr. Darcy's\" naïve café, £5!", "on the mat, on the mat"] * 20
    data.train_tokenizer(corpus, vocab_size=300).save_pretrained(str(tmp_path))
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    ids = {t: tok.convert_tokens_to_ids(t) for t in data.SPECIAL_TOKENS}
    assert list(ids.values()) == [0, 1, 2, 3], f"special token ids: {ids}"
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.mask_token_id) == (0, 1, 2, 3), \
        "bos/eos/pad/mask attributes must point at ids 0..3"
    for s in [" on the mat", "on the mat", "  two  spaces ", "Unseen: Ωmega ✓ \n tab\t", ""]:
        enc = tok.encode(s)
        assert not set(enc) & {0, 1}, f"BOS/EOS auto-added to {s!r}: {enc}"
        assert tok.decode(enc) == s, f"round trip {s!r} -> {tok.decode(enc)!r}"
    data.check_tokenizer(tok)  # the same checks prepare() runs must pass


def test_pack_sequences_layout():
    """Rows are [BOS, next seq_len-1 stream tokens]; texts end with EOS; the ragged tail is dropped."""
    texts = [[10, 11, 12], [13], [14, 15, 16, 17]]  # stream: 10 11 12 E 13 E 14 15 16 17 E (11 tokens)
    x = data.pack_sequences(texts, seq_len=4, bos_id=0, eos_id=1)
    assert x.dtype == torch.long and x.shape == (3, 4), f"expected LongTensor [3, 4], got {x.dtype} {x.shape}"
    assert (x[:, 0] == 0).all(), "every row must start with BOS"
    expected = torch.tensor([[0, 10, 11, 12], [0, 1, 13, 1], [0, 14, 15, 16]])
    assert torch.equal(x, expected), f"packed rows:\n{x}"
    assert data.pack_sequences([[5]], seq_len=8, bos_id=0, eos_id=1).shape == (0, 8), \
        "a stream shorter than one row gives an empty [0, seq_len] tensor"


def test_fetch_deb_without_apt(tmp_path, monkeypatch):
    """Without apt-get, fetching fails with a message that says to pass --deb."""
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="--deb"):
        data.fetch_deb(tmp_path)
