"""Time a `[[?]]` fill through the app's own calls (prepare, plan_candidates, execute_candidates), with
the model's length head and without it (the grid of 8 lengths), on the CPU, medians of repeats.

    python scripts/time_chosen_length.py                                  # the flagship, 2 threads
    python scripts/time_chosen_length.py --model assets/a3-smollm2-rs --candidates 4 --repeats 5

The story: the first 45 tokens of assets/examples/04-a-change-of-plans.txt, a `[[?]]` blank, the
next 45. The app's context store is emptied before each run, so every run encodes the story.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "assets" / "a3-smollm2-rs"), help="checkpoint with a length head")
    p.add_argument("--candidates", type=int, default=1, help="candidates per run (the orders pool)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per setting (median)")
    a = p.parse_args(argv)
    if a.repeats < 1 or not 1 <= a.candidates <= 8:
        p.error("give --repeats >= 1 and --candidates from 1 to 8")
    os.environ["A3_MODEL_DIR"] = str(Path(a.model).resolve())
    from app import model_menu
    from app.candidate_plan import plan_candidates
    from app.compute import execute_candidates
    from app.request import RunRequest, prepare
    from model.core.checkpoint import load_tokenizer

    key = model_menu.available_models()[0].key
    model, _ = model_menu.load(key)
    head = model.length_head
    if head is None:
        raise SystemExit(f"{a.model} has no length_head.safetensors: nothing to compare")
    tok = load_tokenizer(a.model)
    ids = tok.encode((ROOT / "assets/examples/04-a-change-of-plans.txt").read_text(), add_special_tokens=False)
    story = tok.decode(ids[:45]) + " [[?]]" + tok.decode(ids[45:90])
    run = prepare(RunRequest.check(story, "left_to_right", 1, 0, "", 0, 0, 1, "0", a.candidates), key)
    store = getattr(model, "context_store", None)
    for label, h in (("with the length head", head), ("the grid (no head)", None)):
        object.__setattr__(model, "length_head", h)
        times, rec = [], None
        for i in range(a.repeats + 1):  # the first run warms up
            if store is not None:
                store.clear()
            t0 = time.perf_counter()
            rec = execute_candidates(run, plan_candidates(run))
            if i:
                times.append(time.perf_counter() - t0)
        lengths = sorted({c["length"] for c in rec["candidates"]})
        print(f"{label}: {statistics.median(times):.2f} s (median of {a.repeats}), {len(rec['candidates'])} "
              f"candidates at lengths {lengths}, chosen {rec['candidates'][0]['length']}")
    object.__setattr__(model, "length_head", head)


if __name__ == "__main__":
    main()
