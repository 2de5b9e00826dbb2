"""The speed benchmark's results (model/bench.py): one system's timings, the machine it ran on,
the three speed targets and the sanity checks printed under the table."""
from __future__ import annotations

import os
import platform
import re
import statistics
from dataclasses import dataclass, field

import torch

from .bench_systems import BenchSystem


@dataclass
class Result:
    system: BenchSystem
    steps: int
    forward_passes: int
    n_tokens: int  # tokens generated (must equal N)
    times: list[float]  # seconds per timed run
    peak_mem_mib: float
    tokens: list[int] = field(default_factory=list)  # generated ids, in blank order
    threads: int = 0
    weights_sum: float = 0.0  # checksum: every system must see the same backbone

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    @property
    def tokens_per_s(self) -> float:
        return self.n_tokens / self.seconds

    @property
    def ms_per_token(self) -> float:
        return 1000 * self.seconds / self.n_tokens


def machine_info(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", open("/proc/cpuinfo").read(), re.M)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    import transformers
    dev = device
    if dev.startswith("cuda") and torch.cuda.is_available():
        dev += f" ({torch.cuda.get_device_name()})"
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"CPU {cpu} ({os.cpu_count()} logical cores), torch {torch.__version__} (default {torch.get_num_threads()} "
            f"threads), transformers {transformers.__version__}, Python {platform.python_version()}, device {dev}; "
            f"load average (1/5/15 min) at the end: {load}")


def _find(results, key):
    return next((r for r in results if r.system.key == key), None)


def ratios(results: list[Result]) -> list[tuple[str, float | None, str, bool | None]]:
    """(what, value, target, met) for the four targets; None where a system was not run."""
    c1, c4 = _find(results, "cached-l2r-1"), _find(results, "cached-l2r-4")
    f1, gen = _find(results, "full-l2r-1"), _find(results, "generate")
    out = []
    v = c1.ms_per_token / gen.ms_per_token if c1 and gen else None
    out.append(("cached gs1 time per token / base `generate` time per token", v, "<= 1.5", None if v is None else v <= 1.5))
    v = c1.tokens_per_s / f1.tokens_per_s if c1 and f1 else None
    out.append(("cached gs1 tokens/s / full-recompute gs1 tokens/s", v, ">= 5", None if v is None else v >= 5))
    v = c4.tokens_per_s / c1.tokens_per_s if c1 and c4 else None
    out.append(("cached gs4 tokens/s / cached gs1 tokens/s", v, ">= 2.5", None if v is None else v >= 2.5))
    cand = _find(results, "candidates-8")
    v = cand.seconds / c1.seconds if c1 and cand else None
    out.append(("8 candidates in one batch: time / one candidate's time", v, "<= 2.5", None if v is None else v <= 2.5))
    return out


def checks(results: list[Result]) -> list[str]:
    """Sanity notes: same backbone everywhere, full recompute reproduces the cached tokens."""
    notes = []
    sums = {round(r.weights_sum, 3) for r in results}
    notes.append(f"- same backbone in every process: {'yes' if len(sums) == 1 else 'NO ' + str(sums)}")
    pairs = [(c, _find(results, "full" + c.system.key[len("cached"):])) for c in results
             if c.system.key.startswith("cached")]
    pairs = [(c, f) for c, f in pairs if f is not None]
    if pairs:
        same = all(c.tokens == f.tokens for c, f in pairs)
        notes.append(f"- full recompute generates the same tokens as the cache ({len(pairs)} pairs): "
                     f"{'yes' if same else 'NO'}")
    short = [r.system.key for r in results if r.n_tokens != len(results[0].tokens)]
    notes.append(f"- every system generated all tokens: {'yes' if not short else 'NO: ' + ', '.join(short)}")
    return notes
