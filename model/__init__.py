"""A3 Studio's library: a pretrained left-to-right LM turned into an any-order, any-subset
autoregressive model (A3, arXiv 2601.13228) that fills blanks in text (docs/DESIGN.md).

    from model import encode_segments, load_a3, parse_template, run

    model, tok = load_a3("assets/a3-austen-tiny")                   # any A3 checkpoint: full or adapter
    enc = encode_segments(tok, parse_template("The cat [[4]] on the mat."), tok.bos_token_id)
    trace = run(model, enc.input_ids, enc.blank_mask, tokenizer=tok, spans=enc.blank_spans)
    print(trace.fills(tok), trace.log_likelihood)

The front door (each name is imported on first use, so `import model` and the command lines stay
light):

    load_a3(path)                         (A3Model, tokenizer) of a full checkpoint or a LoRA adapter
    parse_template, encode_segments       text with [[N]] / [[?]] blanks -> ids, blank mask, blank spans
    DecodeConfig, SamplingConfig          an order, a group size, sampling; every field defaulted
    decode(...)  /  run(...)              the decoding generator of Step events / the finished Trace
    score_blanks, score_fills             log p of blank tokens under any grouping / of candidate fills

The packages:

    core/         the A3 math and its data (imports nothing above it): two-stream walk, groupings,
                  A3Model, decoding, sampling, text with blanks, traces, scoring, candidates, checkpoints
    backbones/    the pretrained bases A3 runs on: LoRA adapters, the SmolLM2 base
    baselines/    what A3 is compared with: the base left to right, masked diffusion
    corpus/       training and evaluation text: Austen, Brown
    training/     progressive adaptation: recipes, steps, the loop (python -m model.train)
    evaluation/   infilling, candidate fills, card metrics, the speed benchmark

and the command lines train.py, eval.py, fills.py, bench.py, metrics.py, data.py, smollm.py
(`python -m model.<name>`), each pointing into a package.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_HOMES = {
    "load_a3": "model.backbones.lora",
    "parse_template": "model.core.infill",
    "encode_segments": "model.core.infill",
    "DecodeConfig": "model.core.decode",
    "decode": "model.core.decode",
    "run": "model.core.decode",
    "SamplingConfig": "model.core.sampling",
    "score_blanks": "model.core.scoring",
    "score_fills": "model.core.scoring",
}
__all__ = sorted(_HOMES)

if TYPE_CHECKING:  # what a type checker and an editor see; at run time __getattr__ imports on first use
    from model.backbones.lora import load_a3
    from model.core.decode import DecodeConfig, decode, run
    from model.core.infill import encode_segments, parse_template
    from model.core.sampling import SamplingConfig
    from model.core.scoring import score_blanks, score_fills


def __getattr__(name: str):
    """model.<name> for a front-door name: imported from its home module once, then cached here."""
    if name not in _HOMES:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
