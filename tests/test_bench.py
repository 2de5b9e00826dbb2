"""Benchmark smoke test: every system runs on a tiny backbone and fills the whole blank.

No timing asserts: the numbers depend on the machine. What is checked is that the table has every
system, that each generated the full N tokens, that the diffusion loop really is bidirectional,
and that the CLI writes its table.
"""
from __future__ import annotations

import torch

from model.evaluation import benchmark

N, L = 4, 16
TINY = dict(preset="test", blank=N, context=L, repeats=1)


def test_every_system_fills_the_blank():
    """All systems in one process: a row each, N tokens each, the sanity notes all say yes."""
    cfg = benchmark.BenchConfig(**TINY, isolate=False)
    results = benchmark.run_all(cfg)
    assert [r.system.key for r in results] == [s.key for s in benchmark.SYSTEMS], "a system is missing"
    for r in results:
        assert r.n_tokens == N and len(r.tokens) == N, f"{r.system.key} generated {r.n_tokens} tokens, not {N}"
        assert r.steps == -(-N // r.system.k), f"{r.system.key}: {r.steps} steps for {N} tokens at k={r.system.k}"
        assert r.forward_passes >= r.steps, f"{r.system.key}: fewer forward passes than steps"
    text = benchmark.report(cfg, results, [])
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    for s in benchmark.SYSTEMS:
        assert any(line.startswith(f"| {s.name} | {s.k} |") for line in rows), f"no table row for {s.key}"
    assert text.count("| yes |") + text.count("| NO |") == 4, "the four target ratios must be reported"
    assert "NO" not in "\n".join(benchmark.checks(results)), f"a sanity check failed:\n{text}"


def test_generate_is_exactly_n_tokens_despite_eos():
    """The base `generate` must not stop at an EOS: prompt whose greedy continuation is EOS-heavy."""
    cfg = benchmark.BenchConfig(**TINY, isolate=False)
    model = benchmark.build_model(cfg)
    with torch.no_grad():  # make EOS the argmax everywhere
        model.base.lm_head.weight[model.config.eos_token_id] += 10.0 * model.base.model.norm.weight.sign()
    ids, mask = benchmark.make_task(cfg, model)
    tokens, steps, passes = benchmark.run_generate(model, ids, mask)
    assert len(tokens) == N and steps == N, f"generate stopped early: {tokens}"
    assert passes == N, f"{passes} forward passes for {N} tokens"


def test_diffusion_mask_is_bidirectional():
    """With the 4D all-visible mask an early position sees a later token; without it, it does not."""
    cfg = benchmark.BenchConfig(**TINY, isolate=False)
    model = benchmark.build_model(cfg)
    ids, _ = benchmark.make_task(cfg, model)
    other = ids.clone()
    other[-1] = (ids[-1] + 1) % model.config.vocab_size
    T = ids.numel()
    with torch.no_grad():
        def h(x, mask):
            return model.base.model(input_ids=x[None], attention_mask=mask, use_cache=False).last_hidden_state[0, 1]
        full = benchmark.diffusion_view(model).attention_bias(1, T)
        assert not torch.allclose(h(ids, full), h(other, full)), "the diffusion forward is still causal"
        assert torch.allclose(h(ids, None), h(other, None)), "without the mask the base should be causal"


def test_cli_writes_the_table(tmp_path):
    """The CLI in its default isolated mode (one spawn process per system; one system here, to
    stay fast), table written to --out; ratios it cannot compute are n/a, not an error."""
    out = tmp_path / "bench.md"
    text = benchmark.main(["--preset", "test", "-N", str(N), "-L", str(L), "--repeats", "1",
                           "--systems", "cached-l2r-1", "--threads", "1", "--clock", "cpu", "--out", str(out)])
    assert out.read_text() == text
    assert "| A3 cached, left_to_right | 1 | 4 | 4 |" in text, text
    assert text.count("| n/a |") == 8, text  # value and verdict of each of the four targets
    assert "clock: process CPU time" in text and "benchmark processes: [1]" in text, text
