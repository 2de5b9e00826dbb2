"""Encoded visible texts kept between decodes: a user who fills the same story again (another order,
seed, temperature or candidate count), or many users on the same example story, skip encoding it.

    enable_context_store(model, max_mb=64)   decodes on this model keep and reuse encoded contexts
    context_store(model)                     its store, or None (the default: nothing is kept)
    store.get(key) / store.put(key, entry)   an Entry per decode._Row.context_key(), least recently used out

A cached decode's first walk encodes the visible text into the K/V cache (decode._shared_context);
that text's K/V depends only on the text, its positions and the context grouping (the key), never
on the blanks, so a later decode of a story with the same visible text can start from a copy. The
K/V are the same numbers a fresh encoding gives, up to float rounding when the text was encoded
in a batch of another size (the same freedom any batched decode has). The store lives on the model
object (weights never change after loading), holds at most max_mb of K/V, and is safe to share
between threads.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class Entry:
    """One encoded visible text: per layer K and V (Hkv, n, D), its group ids and validity (n,)."""
    k: list[torch.Tensor]
    v: list[torch.Tensor]
    groups: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def of(cls, cache, row: int, n: int) -> "Entry":
        """Copies of the first n slots of one row of a two_stream.KVCache (the visible text a walk
        encoded there)."""
        return cls([t[row, :, :n].clone() for t in cache.k], [t[row, :, :n].clone() for t in cache.v],
                   cache.groups[row, :n].clone(), cache.valid[row, :n].clone())

    @property
    def length(self) -> int:
        return self.groups.numel()

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class ContextStore:
    """Least-recently-used Entries by key, at most max_bytes of them."""

    def __init__(self, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError(f"a context store needs a positive size; got {max_bytes} bytes")
        self.max_bytes, self.bytes = max_bytes, 0
        self.hits = self.misses = 0
        self._items: OrderedDict[tuple, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple) -> Entry | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return entry

    def put(self, key: tuple, entry: Entry) -> None:
        """Keep an entry (one larger than the whole store is not kept)."""
        if entry.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key).nbytes
            self._items[key] = entry
            self.bytes += entry.nbytes
            while self.bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0


def enable_context_store(model, max_mb: float = 64) -> ContextStore:
    """Give a model a context store of max_mb (replacing any it had); returns it."""
    store = ContextStore(int(max_mb * 2 ** 20))
    object.__setattr__(model, "context_store", store)  # a plain attribute, not a submodule
    return store


def context_store(model) -> ContextStore | None:
    return getattr(model, "context_store", None)


__all__ = ["ContextStore", "Entry", "context_store", "enable_context_store"]
