"""Training for the right side: query rows at the scored positions only, user-shaped blanks, the
loss weight on each blank's last tokens, widening an adapter, and the right-side metric; each
against an oracle (the full forward, a hand-built mask, a hand-weighted mean, the narrower
adapter, score_blanks on a cut row)."""
import random

import pytest
import torch
import torch.nn.functional as F
from conftest import make_a3, make_base

from model.backbones.lora import add_lora
from model.core.a3 import A3Model
from model.core.samplers import make_sampler, sample_user_blanks
from model.core.scoring import score_blanks
from model.evaluation.card_metrics import measure_card
from model.training.models import widen_adapter
from model.training.recipe import resolve_precision
from model.training.steps import blank_tails, grouping_batch, stage_loss


def batch(seed=0, B=3, T=60, spec="user:3-10"):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 99, (B, T), generator=gen)
    ids[:, 0] = 0
    return ids, grouping_batch(make_sampler(spec), B, T, random.Random(seed))


def test_query_rows_at_chosen_positions_equal_the_full_forward():
    """forward(query_positions=P) gives, row for row, the full forward's logits at P."""
    model = make_a3()
    ids, g = batch()
    pos = torch.tensor([[5, 17, 30, 0], [1, 2, 59, 40], [33, 33, 10, 0]])
    with torch.no_grad():
        full = model(ids, g).logits
        part = model(ids, g, query_positions=pos).logits
    want = full.gather(1, pos[..., None].expand(-1, -1, full.shape[-1]))
    assert torch.allclose(part, want, atol=1e-5), f"max diff {(part - want).abs().max():.2e}"


def test_blanks_only_loss_equals_the_full_forward_loss_and_backward():
    """score_first=False runs the query stream at the blanks only: the same loss and gradients as
    the full forward with the first group's labels removed."""
    model = make_a3()
    ids, g = batch(1)
    loss = stage_loss(model, ids, g, score_first=False)
    loss.backward()
    grad = model.w.grad.clone()
    model.zero_grad()
    labels = A3Model.default_labels(ids)
    labels[g == g[:, 1:].min(dim=1, keepdim=True).values] = -100
    ref = model(ids, g, labels=labels).loss
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5), f"{loss.item()} vs full forward {ref.item()}"
    assert torch.allclose(grad, model.w.grad, atol=1e-6), "gradients of w should match the full forward's"


def test_user_blanks_are_spans_of_the_asked_lengths_away_from_the_edges():
    """Every drawn grouping: visible text is group 0, 1-3 blank spans of 3-24 tokens, each at least
    16 tokens from both ends and 4 apart, each blank in a later group."""
    rng = random.Random(0)
    for _ in range(200):
        g = sample_user_blanks(127, rng)
        blank = (g > 0).nonzero().flatten().tolist()
        spans = []
        for p in blank:
            if spans and p == spans[-1][-1] + 1:
                spans[-1].append(p)
            else:
                spans.append([p])
        assert 1 <= len(spans) <= 3, f"1-3 spans, got {len(spans)}"
        assert all(3 <= len(s) <= 24 for s in spans), f"span lengths {[len(s) for s in spans]}"
        assert spans[0][0] >= 16 and spans[-1][-1] < 127 - 16, f"spans too near an edge: {spans}"
        assert all(b[0] - a[-1] > 4 for a, b in zip(spans, spans[1:])), "spans should be 4 apart"
        assert (g == 0).sum() == 127 - len(blank), "every other token is visible, in group 0"


def test_user_blanks_take_whole_clauses_when_given_boundaries():
    """With clause starts every 10 tokens, about half the spans start and end exactly on them."""
    starts = torch.zeros(127, dtype=torch.bool)
    starts[::10] = True
    rng, whole, n = random.Random(0), 0, 0
    for _ in range(300):
        g = sample_user_blanks(127, rng, starts)
        blank = (g > 0).int()
        edges = torch.diff(torch.cat([torch.zeros(1, dtype=torch.int), blank, torch.zeros(1, dtype=torch.int)]))
        for a, b in zip((edges == 1).nonzero().flatten().tolist(), (edges == -1).nonzero().flatten().tolist()):
            n += 1
            whole += a % 10 == 0 and b % 10 == 0
    assert 0.35 < whole / n < 0.8, f"about half the spans should be whole clauses: {whole}/{n}"


def test_blank_tails_marks_the_last_two_of_every_span():
    g = torch.tensor([[0, 0, 3, 4, 5, 0, 0, 6, 0, 1, 2]])
    want = torch.tensor([[0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(blank_tails(g), want), f"{blank_tails(g).int().tolist()} != {want.int().tolist()}"


def test_tail_weight_is_a_weighted_mean_of_the_token_nll():
    model = make_a3()
    ids, g = batch(2)
    with torch.no_grad():
        got = stage_loss(model, ids, g, score_first=False, tail_weight=3.0).item()
        lp = model.token_logprobs(ids, g)
    blank = g != g[:, 1:].min(dim=1, keepdim=True).values
    blank[:, 0] = False
    w = (1.0 + 2.0 * blank_tails(g).float()) * blank
    want = (-(lp * w).sum() / w.sum()).item()
    assert got == pytest.approx(want, rel=1e-5), f"{got} vs hand-weighted {want}"


def test_widening_an_adapter_keeps_its_logits():
    """A rank-4 attention adapter widened to rank 16 with the MLP: the same logits, more trainables."""
    model = add_lora(make_a3(), r=4, alpha=8)
    with torch.no_grad():
        for n, p in model.base.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    ids, g = batch(3)
    with torch.no_grad():
        before = model(ids, g).logits
    n_before = sum(p.numel() for p in model.parameters() if p.requires_grad)
    wide = widen_adapter(model, {"r": 16, "alpha": 16, "mlp": True})
    with torch.no_grad():
        after = wide(ids, g).logits
    assert wide.lora["r"] == 16 and "up_proj" in wide.lora["targets"], f"widened config {wide.lora}"
    assert torch.allclose(before, after, atol=1e-5), f"max diff {(before - after).abs().max():.2e}"
    assert sum(p.numel() for p in wide.parameters() if p.requires_grad) > n_before, "more parameters should train"


def test_right_side_gain_compares_a3_with_itself_on_a_cut_row():
    """right_gain: the span tokens scored with both sides vs with the row cut after the span."""
    model = make_a3(vocab_size=99)
    rows = torch.randint(3, 99, (3, 64), generator=torch.Generator().manual_seed(4))
    rows[:, 0] = 0
    res = measure_card(model, None, None, rows, parts=("right",))
    rng, both, left, last_b, last_l = random.Random(0), 0.0, 0.0, 0.0, 0.0
    # replay measure_card's draws: a random order per row (drawn even when not measured), then the spans
    from model.core.samplers import sample_random_groups
    for _ in range(3):
        sample_random_groups(63, rng, 1, 1)
    n = 0
    for i in range(3):
        L = rng.randint(5, 20)
        start = rng.randint(16, 48 - L)
        span = torch.zeros(64, dtype=torch.bool)
        span[start:start + L] = True
        b = -score_blanks(model, rows[i], span)
        lft = -score_blanks(model, rows[i, :start + L], span[:start + L])
        both, left, last_b, last_l, n = both + b.sum(), left + lft.sum(), last_b + b[-2:].sum(), last_l + lft[-2:].sum(), n + L
    assert res["infill_a3"] == pytest.approx(float(both) / n, rel=1e-5), "both-sides NLL"
    assert res["infill_a3_left"] == pytest.approx(float(left) / n, rel=1e-5), "left-only NLL"
    assert res["right_gain"] == pytest.approx(1 - float(both) / float(left), rel=1e-4), "gain over all tokens"
    assert res["right_gain_last2"] == pytest.approx(1 - float(last_b) / float(last_l), rel=1e-4), "gain, last two"


def test_auto_precision_is_fp32_unless_the_hardware_has_bf16(monkeypatch):
    import model.training.recipe as recipe
    monkeypatch.setattr(recipe, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto") == "no", "a CPU without bf16 trains in fp32"
    monkeypatch.setattr(recipe, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto") == "bf16", "a CPU with AVX-512 BF16 trains under bf16 autocast"
    assert resolve_precision("no") == "no", "an explicit setting is kept"


def test_slack_row_puts_the_span_then_empties_then_the_right_text():
    """A slack row: L real tokens in the first slots, M - L empty tokens, then the row's text from
    after the span on (shifted right, cut at T); the slots are the only blanks, one per group."""
    from model.training.slack_rows import slack_row
    row = torch.arange(100, 164)  # (64,) distinct tokens: a shift is easy to see
    row[0] = 0
    rng = random.Random(3)
    for _ in range(50):
        ids, g = slack_row(row, rng, empty_id=7, margin=8, max_slots=24)
        slots = (g > 0).nonzero().flatten()
        a, M = int(slots[0]), len(slots)
        assert torch.equal(slots, torch.arange(a, a + M)), "the slots should be one contiguous blank"
        empties = (ids == 7).nonzero().flatten()
        L = M - len(empties)
        assert 1 <= L <= M and torch.equal(empties, torch.arange(a + L, a + M)), "empties fill the slots' end"
        assert torch.equal(ids[:a + L], row[:a + L]), "the text before and inside the span is the row's own"
        assert torch.equal(ids[a + M:], row[a + L:a + L + 64 - a - M]), "the right text follows all the slots"
        assert sorted(g[slots].tolist()) == list(range(1, M + 1)), "each slot is its own group after the text"
        assert a >= 9 and 64 - (a + M) >= 8, "the blank keeps the margins"


def test_end_weight_weighs_the_slot_where_each_slack_fill_ends():
    """fill_ends marks each slack blank's first empty slot (hand-made rows), and end_weight makes the
    loss the weighted mean of the token NLL with that slot weighing end_weight."""
    from model.training.slack_rows import fill_ends, slack_row
    E = 7
    ids = torch.tensor([[0, 5, 6, E, E, E, 8, 9], [0, E, E, 4, 5, 6, 8, E]])
    want = torch.tensor([[0, 0, 0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(fill_ends(ids, E), want), f"{fill_ends(ids, E).int().tolist()} != {want.int().tolist()}"
    model = make_a3()
    rng = random.Random(0)
    rows = [slack_row(torch.randint(8, 60, (40,)).index_fill(0, torch.tensor([0]), 0), rng, E, margin=8,
                      max_slots=16) for _ in range(2)]
    ids, g = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
    assert fill_ends(ids, E).sum() >= 1, "at least one slack row should have an unused slot"
    with torch.no_grad():
        got = stage_loss(model, ids, g, score_first=False, end_weight=5.0, empty_id=E).item()
        plain = stage_loss(model, ids, g, score_first=False).item()
        lp = model.token_logprobs(ids, g)
    w = (1.0 + 4.0 * fill_ends(ids, E).float()) * (g > 0)
    want = (-(lp * w).sum() / w.sum()).item()
    assert got == pytest.approx(want, rel=1e-5), f"{got} vs hand-weighted {want}"
    assert got != pytest.approx(plain, rel=1e-6), "the weight should change the loss"


def test_a_slack_stage_trains_and_records_the_length_signal(corpus, tmp_path):
    """A stage with slack_share trains, and the checkpoint names its empty token and slot limit."""
    from model.training.loop import Stage, TrainConfig, train
    cfg = TrainConfig(data_dir=str(corpus), out_dir=str(tmp_path), mixed_precision="no", seq_len=48, batch_size=4,
                      n_layer=2, hidden=32, n_head=4, n_kv_head=2, intermediate=64, eval_every=1000, eval_rows=4,
                      save_every=50, empty_token="<mask>", max_slots=12,
                      stages=[Stage("0-base", "base", 2, 3e-3, 1),
                              Stage("3-user", "user:3-8", 3, 3e-3, 1, score_first=False, slack_share=0.5)])
    final = train(cfg)
    sig = A3Model.from_pretrained(final).a3_config.length_signal
    assert sig == {"empty_id": 3, "empty_token": "<mask>", "max_slots": 12, "marker": True}, \
        f"length signal recorded: {sig}"
    with pytest.raises(ValueError, match="empty_token"):
        train(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "bad"), "empty_token": "<nothing>"}))


def test_an_empty_token_that_shares_its_embedding_row_is_refused():
    """SmolLM2's GGUF gives <empty_output> the same output-embedding row as six other tokens, so
    their logits are always equal and greedy decoding can never write it: such a token is refused
    with the names of its twins; a token with a row of its own is accepted."""
    from conftest import make_a3
    from model.training.loop import empty_token_id

    class Tok:
        vocab = {"<a>": 3, "<b>": 5, "<c>": 6}

        def get_vocab(self):
            return self.vocab

        def convert_ids_to_tokens(self, i):
            return {v: k for k, v in self.vocab.items()}.get(i, f"t{i}")
    model = make_a3(vocab_size=32)
    W = model.base.get_output_embeddings().weight
    with torch.no_grad():
        W[5] = W[3]
    with pytest.raises(ValueError, match="shares its output-embedding row with 1 other token.*'<b>'"):
        empty_token_id(Tok(), "<a>", model)
    assert empty_token_id(Tok(), "<c>", model) == 6, "a token with its own row is the empty token"


def test_rightward_rows_are_read_right_to_left_or_are_user_blanks():
    """rightward:P: about P of the rows are singleton groups in reverse position order, the rest
    user blanks (a visible group 0 and later blank groups)."""
    sampler = make_sampler("rightward:0.3")
    rng, reverse = random.Random(0), 0
    for _ in range(400):
        g = sampler(60, rng)
        if torch.equal(g, torch.arange(59, -1, -1)):
            reverse += 1
        else:
            assert (g == 0).sum() > 20 and g.max() > 0, "otherwise a user-blank grouping"
    assert 0.24 < reverse / 400 < 0.36, f"about 30% of rows right to left, got {reverse / 400:.2f}"
