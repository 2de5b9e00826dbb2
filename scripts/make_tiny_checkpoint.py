"""Write an untrained A3 checkpoint (random LLaMA backbone + tokenizer) for testing the app.

    python scripts/make_tiny_checkpoint.py OUT_DIR [--hidden 256 --layers 4 --intermediate 688]
    A3_MODEL_DIR=OUT_DIR python app.py

The tokenizer is data/austen/tokenizer when it is prepared, else a small BPE trained on
assets/examples. The app makes the same kind of checkpoint by itself (64 x 2) when no trained
model is present; this script is for other sizes, e.g. one shaped like the shipped model to
time the app before that model exists.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.fallback import write_random_checkpoint  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="directory to write the checkpoint to")
    p.add_argument("--hidden", type=int, default=64, help="hidden size (a multiple of 4)")
    p.add_argument("--layers", type=int, default=2, help="decoder layers")
    p.add_argument("--intermediate", type=int, default=None, help="MLP width (default 2.5 x hidden)")
    p.add_argument("--context", type=int, default=512, help="max_position_embeddings")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    a = p.parse_args(argv)
    out = write_random_checkpoint(a.out, hidden=a.hidden, layers=a.layers, max_positions=a.context, seed=a.seed,
                                  intermediate=a.intermediate)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
