"""Sentence infilling on held-out Austen: A3 vs the masked-diffusion baseline vs the AR base.

    python -m model.eval --a3 runs/a3-austen-tiny/final --diffusion runs/diffusion-austen-tiny/final \\
        --base runs/a3-austen-tiny/base --windows 500 --out docs/eval
    python -m model.eval ... --windows 20 --systems 'a3-confidence-*,diffusion-*,ar'   # a quick look

The paper's Table 1 in miniature, in the ROCStories protocol (DiffuLLaMA's): five consecutive
sentences, the middle one blanked at its true token length, the other four given; ROUGE-1/2/L
F-measure x 100 (rouge-score, Porter stemmer) of the generated sentence against the original.

Windows: paragraphs of data/austen/eval.txt (unseen in training) are split into sentences with
model.core.infill.sentence_spans (a sentence ends at . ! ? and closing quotes, "Mr." and the like do
not end one, nor does '"Oh!" said she.'). A window is five consecutive sentences of ONE paragraph
(windows of a paragraph overlap; every window blanks a different sentence). Kept: windows of at
most 256 tokens with the BOS (the training length) whose middle sentence has 5 to 64 tokens.
The kept windows are shuffled with `--seed`; `--windows N` takes the first N, so a short run is a
prefix of the full one. Sequence: BOS + s1 s2 + [blank: " s3"] + " s4 s5" (the blank owns its
leading space, as in model.core.infill).

Systems (all greedy; `--systems` takes comma-separated fnmatch patterns of the keys):
  a3-{strategy}-{k}   model.core.decode.run, context = one visible block, strategy in STRATEGIES below,
                      group size / tokens per step k in 1, 2, 4: ceil(L/k) forward passes
  diffusion-{k}       DiffusionLM.infill with steps = ceil(L/k): the same number of forward
                      passes as A3 at group size k (each one a full bidirectional forward)
  ar                  the AR base's `generate` from BOS + s1 s2 alone, exactly L tokens: L passes
Likelihood of the original blanked sentence (nats per token; the kinds differ, the table says which):
  a3         group-factorized NLL under the grouping the run realised (the reference tokens scored
             in that run's order and groups; exact likelihood at k = 1)
  diffusion  the Monte-Carlo ELBO bound (>= NLL) of the blanks given the four sentences
  ar         exact NLL, left context only
Cost: forward passes and wall milliseconds per infill (model calls only, one CPU thread by default).

Every (window, system) result is appended to WORK/records.jsonl as it is made, so an interrupted
run resumes where it stopped. The report (OUT/infill.md, OUT/infill_rougeL_vs_passes.html and .png)
is rebuilt from the records at the end, or alone with `--report-only`; it is written by
model/evaluation/infilling_report.py. Windows and systems are model/evaluation/infill_task.py's.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch

from model.baselines.ar import generate_exactly, left_logprobs
from model.core.decode import DecodeConfig, run
from model.core.sampling import SamplingConfig
from model.core.scoring import score_blanks

from .infill_task import EvalSystem, Window, all_systems, make_windows, select_systems, split_sentences
from .infilling_report import ROUGE, summarize, paired, verdict, write_report


def run_a3(model, win: Window, sys_: EvalSystem, seed: int) -> tuple[list[int], int, float, float]:
    """(generated ids, forward passes, seconds, NLL of the reference under the run's grouping)."""
    cfg = DecodeConfig(strategy=sys_.strategy, group_size=sys_.k, n_alternatives=0,
                       sampling=SamplingConfig(seed=seed))  # greedy; the seed fixes `random`'s order
    t0 = time.perf_counter()
    trace = run(model, win.input_ids, win.blank_mask(), cfg)
    secs = time.perf_counter() - t0
    # the reference sentence scored in the order and groups this run took
    nll = -score_blanks(model, win.reference_sequence(), win.blank_mask(), trace.groups()).sum().item()
    return trace.fill_ids()[0], trace.forward_passes, secs, nll


def run_diffusion(model, win: Window, sys_: EvalSystem) -> tuple[list[int], int, float]:
    res = model.infill(win.input_ids, win.blank_mask(), steps=math.ceil(len(win.blank) / sys_.k))
    return [res.output_ids[p] for p in win.blank], res.forward_passes, res.seconds


@torch.no_grad()
def run_ar(base, win: Window) -> tuple[list[int], int, float, float]:
    """Greedy `generate` of exactly L tokens from BOS + left context; its exact left-context NLL."""
    L, start = len(win.blank), win.blank[0]
    t0 = time.perf_counter()
    new, _ = generate_exactly(base, torch.tensor(win.input_ids[:start]), L)
    secs = time.perf_counter() - t0
    lp = left_logprobs(base, torch.tensor(win.input_ids[:start] + win.reference_ids))[0]
    return new, L, secs, -lp[start:].sum().item()


def rouge(scorer, reference: str, hypothesis: str) -> dict:
    s = scorer.score(reference, hypothesis)
    return {k: 100 * s[k].fmeasure for k in ROUGE}


# ----------------------------------------------------------------------------------------------
# the run


def load_models(args, systems):
    fams = {s.family for s in systems}
    models = {}
    if "a3" in fams:
        from model.backbones.lora import load_a3
        models["a3"] = load_a3(args.a3)[0]  # a full checkpoint or an adapter
    if "diffusion" in fams:
        from model.baselines.diffusion import DiffusionLM
        models["diffusion"] = DiffusionLM.from_pretrained(args.diffusion)
    if "ar" in fams:
        from model.backbones.lora import resolve_base
        models["ar"] = resolve_base(args.base).eval()  # a local checkpoint, or smollm2-135m-gguf
    return models




def run_windows(args, windows: list[Window], systems: list[EvalSystem], tokenizer, records_path: Path) -> None:
    """Run every (window, system) pair not yet in records_path, appending one record each."""
    from rouge_score.rouge_scorer import RougeScorer
    scorer = RougeScorer(list(ROUGE), use_stemmer=True)
    done = {(r["window"], r["system"]) for r in read_records(records_path)}
    todo = [(w, s) for w in windows for s in systems if (w.index, s.key) not in done]
    models = load_models(args, systems) if todo else {}
    if "diffusion" in models and tokenizer.mask_token_id != models["diffusion"].mask_id:
        raise SystemExit("error: the diffusion model's mask id differs from the tokenizer's <mask>")
    elbo = {}
    t_start = time.time()
    with open(records_path, "a") as f:
        for n, (w, s) in enumerate(todo):
            if s.family == "a3":
                hyp, passes, secs, nll = run_a3(models["a3"], w, s, args.seed)
            elif s.family == "diffusion":
                hyp, passes, secs = run_diffusion(models["diffusion"], w, s)
                if w.index not in elbo:  # one bound per window, shared by the k settings
                    elbo[w.index] = models["diffusion"].elbo_nll(
                        torch.tensor([w.reference_sequence()]), torch.tensor([w.blank_mask()]),
                        args.elbo_samples, seed=args.seed + w.index).item()
                nll = elbo[w.index]
            else:
                hyp, passes, secs, nll = run_ar(models["ar"], w)
            text = tokenizer.decode(hyp, skip_special_tokens=True).strip()
            rec = {"window": w.index, "system": s.key, "hyp": text, "passes": passes, "seconds": secs,
                   "nll": nll, "tokens": len(w.blank), **rouge(scorer, w.reference, text)}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            if args.progress and (n + 1) % args.progress == 0:
                rate = (time.time() - t_start) / (n + 1)
                print(f"{n + 1}/{len(todo)} done, {rate * (len(todo) - n - 1) / 60:.1f} min left", file=sys.stderr)


def read_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m model.eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--a3", default="runs/a3-austen-tiny/final", help="A3 checkpoint directory")
    p.add_argument("--diffusion", default="runs/diffusion-austen-tiny/final", help="DiffusionLM checkpoint directory")
    p.add_argument("--base", default="runs/a3-austen-tiny/base",
                   help="the AR base (stage 0) checkpoint, or smollm2-135m-gguf for an adapter over SmolLM2")
    p.add_argument("--data", default="data/austen", help="prepared corpus: eval.txt and tokenizer/")
    p.add_argument("--windows", type=int, default=500, help="number of windows (the first N after shuffling)")
    p.add_argument("--systems", default="*", help="comma-separated fnmatch patterns of system keys, e.g. 'a3-*-1,ar'")
    p.add_argument("--seed", type=int, default=0, help="window shuffle, A3 random order and ELBO seed")
    p.add_argument("--elbo-samples", type=int, default=8, help="Monte-Carlo samples of the diffusion ELBO per window")
    p.add_argument("--out", default="docs/eval", help="report directory (infill.md, plot .html/.png)")
    p.add_argument("--work", default="runs/eval-austen-tiny", help="records.jsonl lives here (resumable)")
    p.add_argument("--fresh", action="store_true", help="discard earlier records in --work")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the records, run nothing")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (one is fastest for a tiny model)")
    p.add_argument("--progress", type=int, default=50, help="print progress every N infills (0: quiet)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from model.core import checkpoint
    from model.corpus.austen import load_split, load_tokenizer
    # the A3 model's own tokenizer (a pretrained base's, for an adapter); the corpus's otherwise
    own = checkpoint.kind(args.a3) in ("a3", "adapter")
    tokenizer = checkpoint.load_tokenizer(args.a3) if own else load_tokenizer(args.data)
    windows = make_windows(load_split(args.data, "eval"), tokenizer, args.windows, args.seed)
    if len(windows) < args.windows:
        print(f"note: only {len(windows)} windows qualify; using all of them", file=sys.stderr)
    systems = select_systems(args.systems)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    records_path, run_path = work / "records.jsonl", work / "run.json"
    ident = {k: getattr(args, k) for k in ("a3", "diffusion", "base", "data", "seed", "elbo_samples")}
    if args.fresh:
        records_path.unlink(missing_ok=True)
    if records_path.is_file() and run_path.is_file() and json.loads(run_path.read_text()) != ident:
        raise SystemExit(f"error: {records_path} holds records of another setup ({run_path}); "
                         "pass --fresh to discard them or another --work")
    run_path.write_text(json.dumps(ident, indent=2))
    if not args.report_only:
        run_windows(args, windows, systems, tokenizer, records_path)
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--report-only", "--fresh")]
    command = "python -m model.eval " + " ".join(shlex.quote(a) for a in given)
    path = write_report(args, windows, systems, read_records(records_path), command)
    print(path)


if __name__ == "__main__":
    main()


__all__ = ["Window", "EvalSystem", "split_sentences", "make_windows", "all_systems", "select_systems",
           "summarize", "paired", "verdict", "run_a3", "run_ar", "run_diffusion", "run_windows", "main"]
