"""Inference precisions (model/backbones/precision.py, bf16_linear.py) against fp32: the bf16-weight
kernel equals an fp32 matmul of the widened weights, and each precision's decoding stays close to
fp32 on the shipped tiny model (the agreement bars on the flagship are measured by
`python -m model.bench --agreement`, docs/benchmarks)."""
import pytest
import torch

from model.backbones.bf16_linear import Bf16Linear, kernel
from model.backbones.lora import load_a3
from model.backbones.precision import PRECISIONS, apply_precision, precision_of, weight_bytes
from model.core.groups import group_ids_from_order


@pytest.mark.parametrize("rows,threads", [(1, 1), (2, 1), (5, 1), (8, 1), (9, 1), (17, 1), (40, 1), (130, 2)])
def test_bf16_linear_equals_fp32_math_on_the_widened_weights(rows, threads):
    """Any number of rows (blocks of 8, each block's tail, several blocks; the kernel's output tiles
    of 32 and their tail; a product large enough to split across threads): y = x @ bf16(W)^T + b to
    fp32 rounding, any width."""
    torch.manual_seed(rows)
    lin = torch.nn.Linear(37, 70)  # widths that are not multiples of 16 (or of the tile) exercise the tails
    if threads > 1:  # 130 rows x 70 outputs x 37 is under SPLIT_MIN: a wider layer splits
        lin = torch.nn.Linear(37, 70 * 1000)
    layer = Bf16Linear.from_linear(lin)
    x = torch.randn(rows, 37)
    want = x @ lin.weight.detach().to(torch.bfloat16).float().T + lin.bias.detach()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = layer(x)
    finally:
        torch.set_num_threads(before)
    assert torch.allclose(got, want, atol=1e-5), f"max diff {(got - want).abs().max():.2e}"
    assert layer(x[None]).shape == (1, rows, lin.out_features), "leading dimensions are kept"


def test_the_kernel_builds_here():
    """On the development machine (x86_64, g++) the kernel compiles; elsewhere the mm path serves."""
    assert kernel() is not None, "the bf16-weight kernel should compile with g++ on this machine"


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_a3("assets/a3-austen-tiny")
    text = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
            "must be in want of a wife. However little known the feelings or views of such a man may be.")
    ids = torch.tensor([tok.bos_token_id] + tok.encode(text))
    return model, ids


@pytest.mark.parametrize("precision", ["bf16w", "bf16", "int8"])
def test_each_precision_stays_near_fp32_on_the_tiny_model(tiny, precision):
    """Scored left to right over a blank span: argmax agreement, span NLL and probabilities near fp32."""
    ref, ids = tiny
    model = apply_precision(load_a3("assets/a3-austen-tiny")[0], precision)
    assert precision_of(model) == precision, "the model says which precision it runs"
    span = list(range(10, 30))
    g = group_ids_from_order(len(ids), [p for p in range(len(ids)) if p not in span], [[p] for p in span])[None]
    pos = torch.tensor(span)[None]
    with torch.no_grad():
        lr = torch.log_softmax(ref(ids[None], g, query_positions=pos).logits, -1)[0]
        lq = torch.log_softmax(model(ids[None], g, query_positions=pos).logits.float(), -1)[0]
    agree = (lr.argmax(-1) == lq.argmax(-1)).float().mean().item()
    nll_r = -lr.gather(1, ids[span, None]).mean().item()
    nll_q = -lq.gather(1, ids[span, None]).mean().item()
    dp = (lr.exp() - lq.exp()).abs().max().item()
    bars = {"bf16w": (0.95, 0.01, 0.02), "bf16": (0.9, 0.02, 0.05), "int8": (0.8, 0.05, 0.15)}[precision]
    assert agree >= bars[0], f"{precision}: argmax agreement {agree:.3f}"
    assert abs(nll_q / nll_r - 1) <= bars[1], f"{precision}: span NLL {nll_q:.4f} vs fp32 {nll_r:.4f}"
    assert dp <= bars[2], f"{precision}: probabilities move by {dp:.3f}"
    assert weight_bytes(model) < weight_bytes(ref), f"{precision} should read fewer weight bytes than fp32"


def test_unknown_precision_and_unmerged_adapters_are_refused():
    from conftest import make_a3
    from model.backbones.lora import add_lora
    with pytest.raises(ValueError, match="choose one of"):
        apply_precision(make_a3(), "fp8")
    with pytest.raises(ValueError, match="merge the adapter"):
        apply_precision(add_lora(make_a3(), r=2, alpha=4), "bf16w")
    assert PRECISIONS[0] == "fp32", "fp32 is the reference and the first choice"


def test_the_cpu_precision_benchmark_measures_speed_and_agreement(tiny):
    """bench --cpu-precision's pieces on the tiny model: a positive bandwidth, speeds for both group
    sizes, the fill and ranking times, and agreement of fp32 with itself (all of it, nothing moved)."""
    from model.backbones.lora import load_a3
    from model.evaluation.precision_bench import agreement, bandwidth, speed
    ref, ids = tiny
    _, tok = load_a3("assets/a3-austen-tiny")
    assert bandwidth(1, mib=16, repeats=2) > 0.1, "a copy moves some GB/s"
    s = speed(ref, tok, 1, repeats=1)
    assert s["tok_s_g4"] > 0 and s["tok_s_g1"] > 0 and s["fill10_s"] > 0 and s["rank8_s"] > 0, f"speeds: {s}"
    rows = ids[:64].expand(2, -1).clone()
    a = agreement(ref, ref, rows)
    assert a == {**a, "agree": 1.0, "max_dp": 0.0} and abs(a["nll_change"]) < 1e-9, f"fp32 vs itself: {a}"
