"""Austen corpus and tokenizer: download, paragraph split, byte-level BPE, packed sequences.

Source: Debian's `r-cran-janeaustenr` (R package, MIT licence; the six novels are public domain
Project Gutenberg text), read with model/corpus/rdata.py so R is not needed. `prepare()` writes to
`data/austen/` (git-ignored):

    train.txt, eval.txt   one paragraph per line
    manifest.json         counts, split rule, source and licence
    tokenizer/            byte-level BPE, loadable with AutoTokenizer.from_pretrained

Cleaning: lines are joined into paragraphs at blank lines, whitespace runs become one space and
the `_italic_` underscores are removed. Only the novel body is kept: title pages (and Northanger
Abbey's "Advertisement") before the first chapter heading, the chapter / volume headings
themselves, and the end markers ("THE END", "FINIS") with anything after them (Northanger
Abbey's editorial "A note on the text") are dropped.

Split rule: the last 10% (rounded up) of the paragraphs of every novel is the eval split, the
rest is train; fixed and deterministic, so eval text is unseen continuous prose from each book.
The tokenizer is trained on the train split only and never adds BOS / EOS itself; training
rows come from `pack_sequences`. No model code lives here.

    python -m model.data prepare --corpus austen   # apt-get download + extract + split + tokenizer
    python -m model.data prepare --corpus austen --deb r-cran-janeaustenr_1.0.0-1_all.deb
    python -m model.data summary --corpus austen
"""

import hashlib
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import torch

from .rdata import read_lazyload

PACKAGE = "r-cran-janeaustenr"
RDX_PATH = "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx"  # inside the .deb
NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>", "<mask>")  # ids 0, 1, 2, 3
EVAL_FRAC = 0.1
HEADING = re.compile(r"^(CHAPTER|Chapter|VOLUME)\s+([IVXLC]+|\d+)\.?$")
END_MARKERS = {"THE END", "FINIS", "A NOTE ON THE TEXT"}  # compared upper-cased


# -----------------------------------------------------------------------------
# obtaining the raw text

def fetch_deb(cache_dir) -> Path:
    """Return a cached r-cran-janeaustenr .deb, running `apt-get download` if there is none."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(cache_dir.glob(f"{PACKAGE}_*.deb"))
    if found:
        return found[-1]
    how = (f"download {PACKAGE}_*.deb by hand (e.g. `apt-get download {PACKAGE}` on a Debian/Ubuntu "
           f"machine, or from https://packages.debian.org/{PACKAGE}) and pass `--deb PATH`")
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"apt-get not found; {how}")
    res = subprocess.run(["apt-get", "download", PACKAGE], cwd=cache_dir, capture_output=True, text=True)
    found = sorted(cache_dir.glob(f"{PACKAGE}_*.deb"))
    if res.returncode != 0 or not found:
        raise RuntimeError(f"`apt-get download {PACKAGE}` failed ({res.stderr.strip() or res.returncode}); "
                           f"try `apt-get update` first, or {how}")
    return found[-1]


def extract_rdx(deb, cache_dir) -> Path:
    """Unpack the .deb with `dpkg-deb -x` and return the path of its Rdata.rdx."""
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError(f"dpkg-deb not found; unpack {deb} on a Debian/Ubuntu machine, or install dpkg")
    root = Path(cache_dir) / "extract"
    root.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True)
    if res.returncode != 0 or not (root / RDX_PATH).exists():
        raise RuntimeError(f"`dpkg-deb -x {deb}` failed or has no {RDX_PATH}: {res.stderr.strip()}")
    return root / RDX_PATH


# -----------------------------------------------------------------------------
# lines -> paragraphs -> split

def novel_paragraphs(lines) -> list[str]:
    """Join a novel's lines into cleaned body paragraphs (see the module docstring for the rules)."""
    paragraphs, buf = [], []
    for line in list(lines) + [""]:  # trailing blank flushes the last paragraph
        if line and line.strip():
            buf.append(line)
        elif buf:
            paragraphs.append(" ".join(" ".join(buf).replace("_", "").split()))
            buf = []
    start = next((i + 1 for i, p in enumerate(paragraphs) if HEADING.match(p)), 0)
    body = []
    for p in paragraphs[start:]:
        if p.upper() in END_MARKERS:
            break
        if not HEADING.match(p):
            body.append(p)
    return body


def split_paragraphs(paragraphs, eval_frac: float = EVAL_FRAC) -> tuple[list[str], list[str]]:
    """Hold out the last ceil(eval_frac * n) paragraphs of one novel: (train, eval)."""
    n_eval = math.ceil(len(paragraphs) * eval_frac - 1e-9)  # epsilon: 0.1 * 30 must stay 3
    cut = len(paragraphs) - n_eval
    return list(paragraphs[:cut]), list(paragraphs[cut:])


def split_novels(novels: dict, eval_frac: float = EVAL_FRAC) -> dict:
    """{novel: paragraphs} -> {"train": [...], "eval": [...]}, novels in the given order."""
    out = {"train": [], "eval": []}
    for paragraphs in novels.values():
        train, held = split_paragraphs(paragraphs, eval_frac)
        out["train"] += train
        out["eval"] += held
    return out


def load_split(data_dir, split: str) -> list[str]:
    """Paragraphs of `train` or `eval` from a prepared data dir."""
    return Path(data_dir, f"{split}.txt").read_text(encoding="utf-8").splitlines()


# -----------------------------------------------------------------------------
# tokenizer

def train_tokenizer(texts, vocab_size: int = 4096):
    """Byte-level BPE on `texts`; specials <bos> <eos> <pad> <mask> get ids 0..3, none auto-added."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # no prefix space: " on the mat" and "on the mat" stay different token strings, so
    # decode(encode(s)) == s for any segment, leading space included
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    # no post-processor: the model code prepends BOS itself (and pack_sequences does for training)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", mask_token="<mask>",
                                   clean_up_tokenization_spaces=False)  # keep " 's" etc. exact


def load_tokenizer(data_dir="data/austen"):
    """The prepared tokenizer, via AutoTokenizer (what the trainer and app use)."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(Path(data_dir) / "tokenizer"))


def check_tokenizer(tokenizer, samples=(" on the mat", "on the mat", "  \"Mr. Darcy's\"  £5 naïve ")):
    """Raise if special ids are off, BOS/EOS get auto-added, or encode/decode is not exact."""
    for i, t in enumerate(SPECIAL_TOKENS):
        if tokenizer.convert_tokens_to_ids(t) != i:
            raise RuntimeError(f"special token {t} should have id {i}")
    for s in samples:
        ids = tokenizer.encode(s)
        if set(ids) & {tokenizer.bos_token_id, tokenizer.eos_token_id}:
            raise RuntimeError(f"tokenizer added BOS/EOS to {s!r}: {ids}")
        if tokenizer.decode(ids) != s:
            raise RuntimeError(f"round trip failed: {s!r} -> {tokenizer.decode(ids)!r}")


def encode_texts(tokenizer, texts) -> list[list[int]]:
    """Token ids per text, without special tokens."""
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def pack_sequences(token_id_lists, seq_len: int, bos_id: int, eos_id: int) -> torch.Tensor:
    """Pack texts into rows [BOS, t_1 .. t_{seq_len-1}] of one stream (text EOS text EOS ...).

    Returns LongTensor [N, seq_len]; the stream tail that does not fill a row is dropped.
    """
    if seq_len < 2:
        raise ValueError("seq_len must be >= 2 (BOS plus at least one token)")
    stream = [t for ids in token_id_lists for t in (*ids, eos_id)]
    n = len(stream) // (seq_len - 1)
    body = torch.tensor(stream[: n * (seq_len - 1)], dtype=torch.long).view(n, seq_len - 1)
    return torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), body], dim=1)


def load_packed(data_dir, split: str, seq_len: int, tokenizer=None) -> torch.Tensor:
    """load_split + encode + pack_sequences with the prepared tokenizer: LongTensor [N, seq_len]."""
    tokenizer = tokenizer or load_tokenizer(data_dir)
    ids = encode_texts(tokenizer, load_split(data_dir, split))
    return pack_sequences(ids, seq_len, tokenizer.bos_token_id, tokenizer.eos_token_id)


# -----------------------------------------------------------------------------
# the whole pipeline

def prepare(out_dir="data/austen", deb=None, vocab_size: int = 4096, cache_dir="data/raw") -> Path:
    """Download (unless `deb` is given), extract, clean, split and train the tokenizer; returns out_dir."""
    out_dir = Path(out_dir)
    deb = Path(deb) if deb else fetch_deb(cache_dir)
    books = read_lazyload(extract_rdx(deb, cache_dir))
    novels = {name: novel_paragraphs(books[name]) for name in NOVELS}
    splits = split_novels(novels)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, paragraphs in splits.items():
        (out_dir / f"{split}.txt").write_text("\n".join(paragraphs) + "\n", encoding="utf-8")

    tokenizer = train_tokenizer(splits["train"], vocab_size)
    tokenizer.save_pretrained(str(out_dir / "tokenizer"))
    tokenizer = load_tokenizer(out_dir)  # check what was saved, not the in-memory object
    check_tokenizer(tokenizer)

    per_novel = {}
    for name, paragraphs in novels.items():
        train, held = split_paragraphs(paragraphs)
        per_novel[name] = {"paragraphs": len(paragraphs), "train": len(train), "eval": len(held),
                           "characters": sum(map(len, paragraphs))}
    manifest = {
        "source": {"package": PACKAGE, "deb": deb.name,
                   "deb_sha256": hashlib.sha256(deb.read_bytes()).hexdigest(),
                   "licence": "novels: public domain (Project Gutenberg text); R package janeaustenr: MIT"},
        "cleaning": "blank lines separate paragraphs; whitespace collapsed; '_' italics removed; title "
                    "pages, chapter/volume headings and end matter dropped",
        "split_rule": f"last ceil({EVAL_FRAC} * n) paragraphs of every novel -> eval, rest -> train",
        "novels": per_novel,
        "splits": summarize(out_dir, tokenizer),
        "tokenizer": {"type": "byte-level BPE", "vocab_size": len(tokenizer),
                      "special_tokens": dict(zip(SPECIAL_TOKENS, range(4))), "trained_on": "train"},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


def summarize(data_dir, tokenizer=None) -> dict:
    """{split: {paragraphs, characters, tokens}} for a prepared data dir (tokens without EOS)."""
    tokenizer = tokenizer or load_tokenizer(data_dir)
    out = {}
    for split in ("train", "eval"):
        paragraphs = load_split(data_dir, split)
        out[split] = {"paragraphs": len(paragraphs), "characters": sum(map(len, paragraphs)),
                      "tokens": sum(map(len, encode_texts(tokenizer, paragraphs)))}
    return out
