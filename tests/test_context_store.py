"""Encoded contexts kept between decodes (core/context_store.py): a decode that starts from a stored
context equals the decode that encodes it (the oracle: the same model without a store), alone and
batched with stories the store does not hold; the store keeps at most its size, oldest out."""
from __future__ import annotations

import torch

from model.core.context_store import ContextStore, Entry, context_store, enable_context_store
from model.core.decode import DecodeConfig, run, run_batch
from model.core.sampling import SamplingConfig


def _story(blank_at: int, blank_len: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.cat([torch.tensor([0]), torch.randint(4, 99, (18,), generator=gen)])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[blank_at:blank_at + blank_len] = True
    return ids, mask


def _same(a, b, where: str):
    assert [s.positions for s in a.steps] == [s.positions for s in b.steps], f"{where}: other commit order"
    assert a.output_ids == b.output_ids, f"{where}: other tokens"
    diff = max(abs(x - y) for sa, sb in zip(a.steps, b.steps) for x, y in zip(sa.probs, sb.probs))
    assert diff <= 1e-5, f"{where}: probabilities differ by {diff:.2e}"


def _without_store(model, fn):
    store = context_store(model)
    object.__setattr__(model, "context_store", None)
    try:
        return fn()
    finally:
        object.__setattr__(model, "context_store", store)


CFGS = [DecodeConfig(), DecodeConfig(strategy="confidence", group_size=2),
        DecodeConfig(strategy="outside_in", sampling=SamplingConfig(do_sample=True, temperature=0.8, seed=3))]


def test_a_story_filled_again_starts_from_its_stored_context(a3):
    store = enable_context_store(a3, max_mb=4)
    ids, mask = _story(6, 5, seed=0)
    for i, cfg in enumerate(CFGS):
        got = run(a3, ids, mask, cfg)
        want = _without_store(a3, lambda: run(a3, ids, mask, cfg))
        _same(got, want, f"run {i} ({cfg.strategy})")
    assert (store.misses, store.hits, len(store)) == (1, 2, 1), \
        f"one encoding, then two reuses: misses {store.misses}, hits {store.hits}, entries {len(store)}"
    other = _story(7, 5, seed=0)  # the same tokens, another blank: other visible positions, another key
    _same(run(a3, *other), _without_store(a3, lambda: run(a3, *other)), "another blank of the same text")
    assert store.misses == 2 and len(store) == 2, "a different visible text must be encoded, not reused"


def test_a_batch_mixing_stored_and_new_contexts_equals_its_rows_alone(a3_llama):
    store = enable_context_store(a3_llama, max_mb=4)
    stories = [_story(6, 5, seed=0), _story(3, 4, seed=1), _story(6, 5, seed=0), _story(10, 6, seed=2)]
    run(a3_llama, *stories[0])  # story 0 stored before the batch
    cfgs = [CFGS[i % len(CFGS)] for i in range(len(stories))]
    batched = run_batch(a3_llama, stories, cfgs)
    assert store.hits == 1 and store.misses == 3, \
        f"the batch reuses story 0 (one lookup for its two rows), encodes the two others: hits {store.hits}, " \
        f"misses {store.misses}"
    for b, ((ids, mask), cfg) in enumerate(zip(stories, cfgs)):
        _same(batched[b], _without_store(a3_llama, lambda: run(a3_llama, ids, mask, cfg)), f"row {b}")


def _entry(n: int, mb: float) -> Entry:
    """An entry of n slots whose K and V take mb MiB together (one layer)."""
    d = int(mb * 2 ** 20 / 4 / 2 / n)
    return Entry([torch.zeros(1, n, d)], [torch.zeros(1, n, d)], torch.zeros(n, dtype=torch.long),
                 torch.ones(n, dtype=torch.bool))


def test_the_store_keeps_at_most_its_size_and_drops_the_least_recently_used():
    store = ContextStore(int(2.5 * 2 ** 20))
    store.put("a", _entry(4, 1.0))
    store.put("b", _entry(4, 1.0))
    assert store.get("a") is not None, "a was stored"
    store.put("c", _entry(4, 1.0))  # 3 MiB > 2.5: the least recently used (b) goes
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None, \
        "the store should drop b, the entry used least recently"
    assert store.bytes <= store.max_bytes, f"{store.bytes} bytes held in a store of {store.max_bytes}"
    store.put("big", _entry(4, 3.0))
    assert store.get("big") is None and len(store) == 2, "an entry larger than the store is not kept"
    try:
        ContextStore(0)
    except ValueError as e:
        assert "positive size" in str(e), f"the message says what to change: {e}"
    else:
        raise AssertionError("a store of 0 bytes must be refused")
