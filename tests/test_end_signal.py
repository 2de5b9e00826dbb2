"""The teacher-forced end-of-fill hazard (model/evaluation/end_signal.py): each hazard is the
model's own probability of the empty token at that slot under left-to-right groups (a forward
pass per slot as the oracle, the slack marker folded into w), and the summary is hand-checked."""
import random

import pytest
import torch
from conftest import make_a3

from model.core.groups import group_ids_from_order
from model.evaluation.end_signal import end_hazards, summary
from model.training.slack_rows import slack_row

EMPTY = 1


@pytest.mark.parametrize("marker", [False, True])
def test_each_hazard_is_the_models_probability_of_the_empty_token_left_to_right(marker):
    """Oracle: one forward per slot j with the empty token written there, queried at j alone; with
    the slack marker, by a copy of the model without it whose w is w + the marker."""
    model = make_a3(seed=1)
    model.a3_config.length_signal = {"empty_id": EMPTY, "empty_token": "<eos>", "max_slots": 16, "marker": marker}
    oracle = make_a3(seed=1)
    with torch.no_grad():
        oracle.w += model.embed(torch.tensor([EMPTY]))[0] if marker else 0
    rng = random.Random(0)
    rows = []
    for k in range(3):
        row = torch.randint(3, 99, (48,), generator=torch.Generator().manual_seed(k))
        row[0] = 0
        ids, g = slack_row(row, rng, EMPTY, margin=8, max_slots=16)
        rows.append((ids, g > 0))
    got = end_hazards(model, rows)
    assert got, "some row should have an unused slot"
    for (ids, mask), r in zip([r for r in rows if (r[0] == EMPTY).any()], got):
        slots = mask.nonzero().flatten().tolist()
        assert r["M"] == len(slots) and ids[slots[r["L"]]] == EMPTY and ids[slots[r["L"] - 1]] != EMPTY, \
            f"L={r['L']} should be the first empty slot of {len(slots)}"
        visible = [p for p in range(len(ids)) if p not in slots]
        g = group_ids_from_order(len(ids), visible, [[p] for p in slots]).clamp(min=0)
        for j in range(r["L"] + 1):
            v = ids.clone()
            v[slots[j]] = EMPTY
            with torch.no_grad():
                out = oracle(v[None], g[None], query_positions=torch.tensor([[slots[j]]])).logits
            want = out[0, 0].softmax(-1)[EMPTY].item()
            assert r["h"][j] == pytest.approx(want, rel=1e-4, abs=1e-7), f"slot {j}: {r['h'][j]} vs forward {want}"


def test_summary_by_hand():
    rows = [{"L": 2, "M": 5, "h": [0.1, 0.2, 0.9]},   # ends greedily at the true end
            {"L": 1, "M": 4, "h": [0.6, 0.3]},        # ends too early; the largest hazard is before
            {"L": 0, "M": 3, "h": [0.4]}]             # the end is the largest, not above one half
    s = summary(rows)
    assert s["rows"] == 3 and s["end_p"] == pytest.approx((0.9 + 0.3 + 0.4) / 3), f"end_p: {s}"
    assert s["before_p"] == pytest.approx((0.1 + 0.2 + 0.6) / 3), f"before_p: {s}"
    assert s["end_top"] == pytest.approx(2 / 3) and s["greedy_ends"] == pytest.approx(1 / 3), f"shares: {s}"
    with pytest.raises(ValueError, match="rows"):
        summary([])


def test_left_to_right_empty_is_the_mean_probability_of_the_empty_token_at_each_position():
    """Oracle: score_blanks (the cached scoring path) of each row with the empty token written at
    position i reads p(empty at i | the tokens before it), since a query never sees its own token."""
    from model.core.scoring import score_blanks
    from model.evaluation.end_signal import left_to_right_empty
    model = make_a3(seed=2)
    model.a3_config.length_signal = {"empty_id": EMPTY, "empty_token": "<eos>", "max_slots": 16}
    ids = torch.randint(3, 99, (2, 12), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 0
    mask = torch.ones(12, dtype=torch.bool)
    mask[0] = False
    want = []
    for row in ids:
        for i in range(1, 12):
            v = row.clone()
            v[i] = EMPTY
            want.append(score_blanks(model, v, mask)[i - 1].exp().item())
    got = left_to_right_empty(model, ids)
    assert got == pytest.approx(sum(want) / len(want), rel=1e-4), f"{got} vs scored {sum(want) / len(want)}"
