"""Speed benchmark: infill one blank of N tokens inside L tokens of context, four ways, one backbone.

    python -m model.bench                          # tiny preset, N=64, L=512, fp32 on CPU
    python -m model.bench --preset small --out bench.md
    python -m model.bench --device cuda --dtype bf16 --model assets/<checkpoint>

The sequence is BOS + L/2 context tokens + N blanks + L/2 context tokens. Systems (docs/DESIGN.md,
"Rules that keep it fast"), all greedy and all on the same weights:

  A3 cached          model.core.decode.decode, use_cache=True: committed content K/V are cached, one
                     walk per step over (committed + target) rows only
  A3 full recompute  the same decoding with use_cache=False: both streams over all L+N+1
                     positions every step (what the reference code does)
  base generate      the base model's own HF `generate` over the prefix (BOS + left context),
                     N new tokens with its KV cache; left-to-right only, it never sees the right context
  diffusion          the base decoder run bidirectionally (a 4D all-visible mask) over all L+N+1
                     positions every step, committing the k most confident blanks per step
                     (DiffusionLM.infill_steps). A cost baseline: the base was never trained this
                     way, so its tokens mean nothing.

Each system runs in a fresh `spawn` process (so one system's allocator state cannot hide another's
memory), warms up once, then is timed `--repeats` times; the table reports the median. The
full-recompute systems (every step one identical full-size forward) warm up on their first two
steps only, and `--slow-repeats` can time them fewer times, so a larger preset fits in minutes. Peak memory
is the process's peak RSS over its own post-load baseline (Linux VmHWM, reset through
/proc/self/clear_refs), or torch.cuda.max_memory_allocated over the post-load allocation on GPU.
"""
from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

from model.core.a3 import A3Model
from .bench_report import Result, checks, machine_info, ratios
from .bench_systems import SYSTEMS, BenchSystem, diffusion_view, run_a3, run_diffusion, run_generate, run_system
from model.backbones.lora import load_a3

# the benchmark's API; systems and results live in bench_systems.py and bench_report.py
__all__ = ["PRESETS", "SYSTEMS", "BenchConfig", "BenchSystem", "Result", "diffusion_view", "build_model", "checks",
           "machine_info", "main", "make_task", "measure", "ratios", "report", "run_a3", "run_all", "run_diffusion",
           "run_generate", "run_system"]

# random-init LLaMA backbones; `tiny` is the size of the model shipped in assets/
PRESETS = {
    "tiny": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, num_key_value_heads=4,
                 intermediate_size=688, vocab_size=4096),
    "small": dict(num_hidden_layers=12, hidden_size=512, num_attention_heads=8, num_key_value_heads=8,
                  intermediate_size=1376, vocab_size=8192),
    # for the smoke test only
    "test": dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=37, vocab_size=99),
}


@dataclass
class BenchConfig:
    preset: str = "tiny"  # random-init backbone (ignored when `model` is given)
    model: str | None = None  # A3 checkpoint directory (full or LoRA adapter: model.lora.load_a3)
    blank: int = 64  # N, tokens to generate
    context: int = 512  # L, visible tokens around the blank (half on each side)
    repeats: int = 3  # timed runs per system; the median is reported
    slow_repeats: int | None = None  # timed runs of the full-recompute systems (None: repeats)
    device: str = "cpu"
    dtype: str = "auto"  # fp32 on CPU, bf16 on CUDA
    seed: int = 0  # backbone init and context tokens
    systems: tuple[str, ...] = tuple(s.key for s in SYSTEMS)
    isolate: bool = True  # one spawn process per system (False: all in this process; memory less honest)
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    clock: str = "wall"  # "wall", or "cpu": this process's CPU time (single-threaded CPU runs only)

    def repeats_of(self, system: BenchSystem) -> int:
        return self.slow_repeats if system.slow and self.slow_repeats else self.repeats


# ----------------------------------------------------------------------------------------------
# the backbone and the task

def dtype_of(cfg: BenchConfig) -> torch.dtype:
    name = cfg.dtype if cfg.dtype != "auto" else ("bf16" if cfg.device.startswith("cuda") else "fp32")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def build_model(cfg: BenchConfig) -> A3Model:
    """The shared backbone: the checkpoint if given, else the seeded random preset."""
    dtype = dtype_of(cfg)
    T = cfg.context + cfg.blank + 1
    if cfg.model:
        model = load_a3(cfg.model, dtype=dtype, device=cfg.device)[0]  # a full checkpoint or an adapter
        max_pos = getattr(model.config, "max_position_embeddings", None)
        if max_pos is not None and max_pos < T:
            raise ValueError(f"{cfg.model} handles {max_pos} positions but L+N+1 = {T}; lower --context or --blank")
        return model
    from transformers import LlamaConfig, LlamaForCausalLM
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; choose one of {', '.join(PRESETS)}")
    lcfg = LlamaConfig(**PRESETS[cfg.preset], max_position_embeddings=max(1024, T), bos_token_id=0,
                       eos_token_id=1, pad_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(cfg.seed)  # same seed, same weights in every process
    base = LlamaForCausalLM(lcfg).eval()
    return A3Model(base).to(device=cfg.device, dtype=dtype).eval()


def make_task(cfg: BenchConfig, model: A3Model) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (T,), blank_mask (T,)): BOS, L/2 random context tokens, N blanks, L/2 context tokens.

    Context tokens avoid the first four ids (specials) and the last one (the diffusion mask id).
    """
    V = model.config.vocab_size
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    left = cfg.context // 2
    ids = torch.randint(4, V - 1, (cfg.context + cfg.blank + 1,), generator=gen)
    ids[0] = model.config.bos_token_id if model.config.bos_token_id is not None else 0
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[1 + left:1 + left + cfg.blank] = True
    ids[mask] = V - 1
    return ids, mask


# ----------------------------------------------------------------------------------------------
# measurement

def _proc_status(key: str) -> int | None:
    """A field of /proc/self/status in KiB (Linux), or None."""
    try:
        m = re.search(rf"^{key}:\s+(\d+) kB", open("/proc/self/status").read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _reset_peak_rss() -> bool:
    try:  # writing 5 resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(model, ids, mask, system: BenchSystem, repeats: int, device: str = "cpu", clock: str = "wall") -> Result:
    """Warm up (a whole run; two steps of a full-recompute system), then time `repeats` runs.

    Peak memory is measured over the post-load baseline and covers the warm-up and the timed runs.
    clock="cpu" times with the process's CPU time: on a shared machine, time spent descheduled
    does not count (meaningful with one thread only: several threads add up, spin-waits included).
    """
    now = time.process_time if clock == "cpu" else time.perf_counter
    gc.collect()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
    else:
        have_hwm = _reset_peak_rss() and _proc_status("VmHWM") is not None
        base_mem = _proc_status("VmRSS") if have_hwm else None
        if base_mem is None:  # no /proc: ru_maxrss (KiB on Linux), which includes the load peak
            import resource
            base_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode():
        run_system(model, ids, mask, system, 2 if system.slow else None)  # warm-up
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = now()
            tokens, steps, passes = run_system(model, ids, mask, system)
            _sync(device)
            times.append(now() - t0)
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base_mem) / 2 ** 20
    else:
        hwm = _proc_status("VmHWM") if have_hwm else None
        if hwm is None:
            import resource
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = (hwm - base_mem) / 1024
    wsum = float(sum(p.detach().double().sum() for p in model.parameters()))
    return Result(system, steps, passes, len(tokens), times, peak, tokens, torch.get_num_threads(), wsum)


def _child(cfg: BenchConfig, system: BenchSystem) -> Result:
    """One system in a fresh process: build the backbone, then measure."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = build_model(cfg)
    ids, mask = make_task(cfg, model)
    return measure(model, ids, mask, system, cfg.repeats_of(system), cfg.device, cfg.clock)


def run_all(cfg: BenchConfig, log=None) -> list[Result]:
    """Every selected system on the same backbone and task; in spawn processes if cfg.isolate."""
    unknown = set(cfg.systems) - {s.key for s in SYSTEMS}
    if unknown:
        raise ValueError(f"unknown system(s) {sorted(unknown)}; choose from {', '.join(s.key for s in SYSTEMS)}")
    if cfg.repeats < 1 or (cfg.slow_repeats or 1) < 1 or cfg.blank < 1 or cfg.context < 2:
        raise ValueError("--repeats, --slow-repeats and --blank must be >= 1 and --context >= 2")
    if cfg.clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu'; got {cfg.clock!r}")
    if cfg.clock == "cpu" and (cfg.threads != 1 or cfg.device != "cpu"):
        raise ValueError("--clock cpu measures one CPU thread: use it with --threads 1 on --device cpu")
    chosen = [s for s in SYSTEMS if s.key in cfg.systems]
    results = []
    model = ids = mask = None
    for s in chosen:
        t0 = time.perf_counter()
        if cfg.isolate:
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
                r = ex.submit(_child, cfg, s).result()
        else:
            if model is None:
                if cfg.threads:
                    torch.set_num_threads(cfg.threads)
                model = build_model(cfg)
                ids, mask = make_task(cfg, model)
            r = measure(model, ids, mask, s, cfg.repeats_of(s), cfg.device, cfg.clock)
        results.append(r)
        if log:
            log(f"  {s.key:14s} {r.tokens_per_s:9.1f} tok/s  ({time.perf_counter() - t0:.1f} s incl. load)")
    return results


# ----------------------------------------------------------------------------------------------
# report

def report(cfg: BenchConfig, results: list[Result], argv: list[str] | None = None) -> str:
    backbone = cfg.model or f"random-init LLaMA preset `{cfg.preset}` ({PRESETS.get(cfg.preset)})"
    mem = ("peak CUDA memory allocated over the post-load allocation" if cfg.device.startswith("cuda")
           else "peak RSS (VmHWM) over the process's post-load RSS")
    lines = [
        f"# A3 speed benchmark: infill N={cfg.blank} blank tokens in L={cfg.context} context tokens",
        "",
        f"- command: `{' '.join(['python -m model.bench', *(argv or [])])}`",
        f"- backbone: {backbone}, {str(dtype_of(cfg)).replace('torch.', '')}",
        f"- sequence: BOS + {cfg.context // 2} context + {cfg.blank} blanks + {cfg.context - cfg.context // 2} context"
        f" ({cfg.context + cfg.blank + 1} positions); greedy everywhere; times include encoding the context "
        f"(A3 and diffusion: both sides; `generate`: the prefix only)",
        f"- machine: {machine_info(cfg.device)}; threads in the benchmark processes: "
        f"{sorted({r.threads for r in results})}",
        f"- timing: median of {cfg.repeats} run(s) after one warm-up run ({cfg.repeats_of(next(s for s in SYSTEMS if s.slow))} run(s) after "
        f"a two-step warm-up for the full-recompute systems); clock: "
        f"{'process CPU time (descheduled time excluded)' if cfg.clock == 'cpu' else 'wall'}; "
        f"{'one fresh spawn process per system' if cfg.isolate else 'all systems in one process'}; memory: {mem}",
        "",
        "| system | group size / k | steps | forward passes | tokens/s | ms per generated token | peak memory (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.system.name} | {r.system.k} | {r.steps} | {r.forward_passes} | {r.tokens_per_s:.1f} "
                     f"| {r.ms_per_token:.2f} | {r.peak_mem_mib:.1f} |")
    lines += ["", "| target | value | goal | met |", "|---|---:|---:|:---:|"]
    for what, v, goal, met in ratios(results):
        lines.append(f"| {what} | {'n/a' if v is None else f'{v:.2f}'} | {goal} | "
                     f"{'n/a' if met is None else ('yes' if met else 'NO')} |")
    lines += ["", *checks(results)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# CLI

def parse_args(argv: list[str] | None = None) -> tuple[BenchConfig, str | None]:
    p = argparse.ArgumentParser(prog="python -m model.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("backbone")
    g.add_argument("--model", default=None, help="A3 checkpoint directory; default: a random-init --preset")
    g.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                   help="random LLaMA config: tiny = 4 layers, width 256, 4 heads, vocab 4096 (the shipped "
                        "model's size); small = 12 layers, width 512, 8 heads, vocab 8192")
    g.add_argument("--seed", type=int, default=0, help="seed of the random weights and context tokens")
    g = p.add_argument_group("task")
    g.add_argument("--blank", "-N", type=int, default=64, help="N: blank tokens to generate")
    g.add_argument("--context", "-L", type=int, default=512, help="L: context tokens, half on each side of the blank")
    g = p.add_argument_group("run")
    g.add_argument("--repeats", type=int, default=3, help="timed runs per system (median reported), after one warm-up")
    g.add_argument("--slow-repeats", type=int, default=None,
                   help="timed runs of the full-recompute A3 and diffusion systems (default: --repeats)")
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: fp32 on CPU, bf16 on CUDA")
    g.add_argument("--systems", default=",".join(s.key for s in SYSTEMS),
                   help="comma-separated subset of the systems to run")
    g.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads in the benchmark processes; 0 leaves torch's default "
                        "(on a busy machine 1 avoids threads waiting on each other)")
    g.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="wall: elapsed time; cpu: the process's CPU time, which on a shared machine leaves out "
                        "the time other processes hold the core (needs --threads 1)")
    g.add_argument("--no-isolate", action="store_true",
                   help="run every system in this process (faster; memory figures less honest)")
    g.add_argument("--out", default=None, help="also write the markdown table to this file")
    a = p.parse_args(argv)
    cfg = BenchConfig(preset=a.preset, model=a.model, blank=a.blank, context=a.context, repeats=a.repeats,
                      slow_repeats=a.slow_repeats,
                      device=a.device, dtype=a.dtype, seed=a.seed,
                      systems=tuple(s.strip() for s in a.systems.split(",") if s.strip()), isolate=not a.no_isolate,
                      threads=a.threads, clock=a.clock)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda was asked for but torch sees no CUDA device")
    return cfg, a.out


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    if "--cpu-precision" in argv:  # the flagship's CPU precisions (model/evaluation/precision_bench.py)
        from .precision_bench import main as precision_main
        return precision_main(argv)
    cfg, out = parse_args(argv)
    print(f"benchmarking {len(cfg.systems)} systems ...", file=sys.stderr)
    results = run_all(cfg, log=lambda s: print(s, file=sys.stderr))
    text = report(cfg, results, argv)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
    return text


if __name__ == "__main__":
    main()
