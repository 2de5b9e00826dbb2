"""How well a checkpoint's learned length signal knows where a fill ends, teacher forced.

The length signal (docs/DESIGN.md, "Blank lengths the model chooses") is the probability of the
empty token at a slack blank's slots. Decoding left to right, the fill ends at the first slot the
model gives the empty token; so what matters is the *hazard* h_j = p(empty at slot j | the fill's
true first j tokens, both sides): high at the true end L, low before it. This measures it on
held-out rows made exactly as training makes them (slack_rows.slack_row), with the true text in
the slots before j (one forward per row: slot j's query sees the slots before it, not itself):

    end_p        mean h_L, the probability of ending at the true end
    before_p     mean h_j over j < L, the probability of ending too early, per slot
    end_top      share of rows whose largest hazard over j <= L is at the true end
    greedy_ends  share of rows where greedy would end at the true end: h_L > 0.5, h_j < 0.5 before

and what the signal costs everywhere else: `l2r_empty`, the empty token's mean probability at every
left-to-right position of held-out rows (mass taken from the true tokens of every fixed-length
likelihood; a perfect signal gives it none).

It is cheaper than `python -m model.fills --pools greedy,signal` (one forward a row)
and answers a narrower question: it follows a training run while the signal is being learned.

    python -m model.evaluation.end_signal --model ~/.cache/a3-studio/runs/a3-smollm2-rs/last --rows 30
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from model.core.chosen_length import length_signal
from model.core.groups import group_ids_from_order
from model.training.slack_rows import slack_row


def slack_rows(ids: torch.Tensor, bos_id: int, n: int, seq_len: int, empty_id: int, seed: int,
               max_slots: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n held-out slack rows (ids (T,), blank mask (T,)) cut from the start of the text's token ids,
    BOS first."""
    if len(ids) < n * seq_len:
        raise ValueError(f"the held-out text has {len(ids)} tokens; {n} rows of {seq_len} need more: ask fewer --rows")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        row = ids[i * seq_len:(i + 1) * seq_len].clone()
        row[0] = bos_id
        sid, g = slack_row(row, rng, empty_id, max_slots=max_slots)
        out.append((sid, g > 0))
    return out


@torch.no_grad()
def end_hazards(model, rows: list[tuple[torch.Tensor, torch.Tensor]]) -> list[dict]:
    """Per row: the true fill length L, the slots M, and the hazards h_0 .. h_L (left to right)."""
    empty = length_signal(model)["empty_id"]
    dev = next(model.parameters()).device
    out = []
    for ids, mask in rows:
        slots = mask.nonzero().flatten()
        at = (ids[slots] == empty).nonzero().flatten()
        if not len(at):  # the span took every slot: no end to find
            continue
        L, T = int(at[0]), len(ids)
        visible = (~mask).nonzero().flatten().tolist()
        g = group_ids_from_order(T, visible, [[p] for p in slots.tolist()]).clamp(min=0)  # left to right
        # slot j's query sees the slots before it (the true text), not its own token: one row serves all j
        logits = model(ids[None].to(dev), g[None].to(dev), query_positions=slots[None, :L + 1].to(dev),
                       slack_mask=mask[None].to(dev)).logits  # (1, L+1, V)
        h = logits[0].float().softmax(-1)[:, empty].cpu()  # (L+1,) the hazard at slots 0..L
        out.append({"L": L, "M": len(slots), "h": h.tolist()})
    return out


@torch.no_grad()
def left_to_right_empty(model, ids: torch.Tensor) -> float:
    """Mean p(empty token) over the predicted positions of rows ids (B, T), BOS first, scored left
    to right (singleton groups in position order, no slack slot)."""
    empty = length_signal(model)["empty_id"]
    dev = next(model.parameters()).device
    B, T = ids.shape
    g = torch.arange(T).expand(B, T)  # position i in group i: each token sees those before it
    logits = model(ids.to(dev), g.to(dev)).logits[:, 1:]  # (B, T-1, V)
    return logits.float().softmax(-1)[..., empty].mean().item()


def summary(rows: list[dict]) -> dict:
    """The four numbers of the module docstring, over rows with an end to find."""
    if not rows:
        raise ValueError("no row had an unused slot; ask more --rows")
    end = [r["h"][-1] for r in rows]
    before = [x for r in rows for x in r["h"][:-1]]
    top = [max(range(len(r["h"])), key=r["h"].__getitem__) == r["L"] for r in rows]
    greedy = [r["h"][-1] > 0.5 and all(x < 0.5 for x in r["h"][:-1]) for r in rows]
    return {"rows": len(rows), "end_p": sum(end) / len(end), "before_p": sum(before) / max(1, len(before)),
            "end_top": sum(top) / len(top), "greedy_ends": sum(greedy) / len(greedy)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a checkpoint folder with a length signal in its config")
    p.add_argument("--text", default="data/brown/eval.txt", help="held-out text (python -m model.data prepare)")
    p.add_argument("--rows", type=int, default=30, help="slack rows to measure")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per row, as the recipe trains")
    p.add_argument("--seed", type=int, default=0, help="draws the rows' blanks")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", help="write the summary and the per-row hazards to this JSON file")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from model.backbones.lora import load_a3
    model, tok = load_a3(a.model)
    sig = length_signal(model)
    if not sig:
        raise SystemExit(f"{a.model} has no length signal in its config (a3.length_signal); train with slack_share")
    ids = torch.tensor(tok.encode(Path(a.text).read_text(), add_special_tokens=False))
    rows = end_hazards(model, slack_rows(ids, tok.bos_token_id, a.rows, a.seq_len, sig["empty_id"], a.seed,
                                         sig.get("max_slots", 48)))
    n0 = a.rows * a.seq_len  # the rows after the slack rows' text
    if len(ids) < n0 + 8 * a.seq_len:
        raise SystemExit(f"{a.text} is too short for {a.rows} slack rows and 8 left-to-right rows; ask fewer --rows")
    l2r = ids[n0:n0 + 8 * a.seq_len].view(8, a.seq_len).clone()
    l2r[:, 0] = tok.bos_token_id
    res = {**summary(rows), "l2r_empty": left_to_right_empty(model, l2r)}
    print(json.dumps(res))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({**res, "per_row": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
