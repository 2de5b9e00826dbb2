"""Stage exactly what a Hugging Face Space needs into a folder, and upload it when asked.

    python scripts/stage_space.py OUT_DIR --hardware cpu-basic                    # stage only
    python scripts/stage_space.py OUT_DIR --hardware zero-gpu --repo USER/NAME    # stage, upload ($HF_TOKEN)
    python scripts/stage_space.py OUT_DIR --hardware zero-gpu --repo USER/NAME --dry-run   # stage only

The folder holds:
    app.py, app/          the app, every file of it
    model/...             the library modules the app imports, found by reading every import
                          statement with ast (lazy ones inside functions too) and following them
                          through model/; no other module of the library
    assets/<checkpoint>/  the checkpoints of the app's model menu (app/model_menu.py,
                          available_models(): folders under assets/ with an `a3` section)
    assets/examples/      the example stories
    README.md             the repo README's front matter with python_version and
                          suggested_hardware for the hardware; the body is space/README.md.template
    requirements.txt      torch for the hardware, then the pins of requirements.txt that the shipped
                          code needs, with what they require (read from the installed packages'
                          metadata: run this where requirements.txt is installed); not gradio,
                          which the Gradio SDK installs at sdk_version
    .gitattributes        Git LFS for weights, for every binary file and every file of 10 MB or more
Tests, configs, scripts, docs, runs, data, training and evaluation code stay out.

Per hardware (https://huggingface.co/docs/hub/spaces-zerogpu, .../spaces-config-reference):
    cpu-basic  Python 3.11 and torch==2.13.0+cpu from the PyTorch CPU index: the versions the test
               suite runs on, without the CUDA build that PyPI's torch is on Linux.
    zero-gpu   Python 3.12.12 (ZeroGPU runs 3.10.13 or 3.12.12), torch==2.11.0 (ZeroGPU takes 2.8.0,
               2.9.1, 2.10.0 or 2.11.0). `spaces` is not listed: the ZeroGPU runtime provides it, at the
               version that works with its GPUs. app.py imports it before anything imports torch (the
               staged app.py gets a guarded `import spaces` on top if it lacks one).

Uploading (--repo without --dry-run) needs a token with write access in $HF_TOKEN. It creates the
Space if it does not exist, then makes the Space's files exactly the staged ones (upload_folder
with delete_patterns="*": files of an earlier deploy that are no longer staged are deleted).
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import string
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the app's menu and the library, read from this checkout
    sys.path.insert(0, str(ROOT))
ASSETS = ROOT / "assets"
EXAMPLES = ASSETS / "examples"
TEMPLATE = ROOT / "space" / "README.md.template"
APP_FILE = "app.py"
APP_DIR = "app"
SHORT_DESCRIPTION_MAX = 60  # characters: the Hub refuses a longer short_description
LFS_LIMIT = 10_000_000  # bytes: "For files larger than 10MB, Spaces requires Git-LFS" (hub docs)
LFS_ATTRS = "filter=lfs diff=lfs merge=lfs -text"
# binary kinds stored with LFS whatever their size: the Hub refuses binary files in plain git
BINARY_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.onnx", "*.npy",
                   "*.npz", "*.pkl", "*.zip", "*.gz", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.webp")
SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
SKIP_SUFFIXES = (".pyc", ".pyi")  # bytecode and type stubs: nothing a running app reads
SDK_PROVIDED = {"gradio", "gradio-client"}  # the Gradio SDK installs these at README.md's sdk_version
EXTRA_NEEDED = {"gguf"}  # not imported by name: transformers reads the SmolLM2 GGUF with it (backbones/smollm_base.py)
OPTIONAL_IMPORTS = {"spaces"}  # imported under try/except; ZeroGPU's runtime provides it, nothing lists it
SPACES_FIRST = ("try:  # ZeroGPU: `spaces` must be imported before torch (added by scripts/stage_space.py)\n"
                "    import spaces  # noqa: F401\n"
                "except ImportError:\n"
                "    pass\n\n")


@dataclass(frozen=True)
class Hardware:
    flavor: str  # README suggested_hardware and create_repo's space_hardware
    python: str  # README python_version
    torch: str  # torch's line in requirements.txt
    index: str | None  # a pip option line before it
    extra: tuple[str, ...]  # more requirement lines
    note: str  # the README's hardware paragraph
    zero_gpu: bool = False  # ZeroGPU: app.py imports `spaces` (which the runtime provides) before torch


HARDWARE = {
    "cpu-basic": Hardware(
        "cpu-basic", "3.11", "torch==2.13.0+cpu", "--extra-index-url https://download.pytorch.org/whl/cpu", (),
        "This Space runs on the free CPU hardware (`cpu-basic`), in float32; runs are queued and decoded "
        "one at a time."),
    "zero-gpu": Hardware(
        "zero-a10g", "3.12.12", "torch==2.11.0", None,
        ("# spaces is not listed: the ZeroGPU runtime provides it, at the version that works with its GPUs",),
        "This Space runs on ZeroGPU: each run asks for a GPU for one short call of its own (`@spaces.GPU`, "
        "counted against the quota of the user who made the run) that decodes and scores it; the page then "
        "replays the recorded steps at the speed you pick.", zero_gpu=True),
}


class StageError(Exception):
    """A reason the folder cannot be staged, saying what to change."""


# ----------------------------------------------------------------------------------------------
# what the app imports

def module_file(name: str) -> Path | None:
    """The file of a project module (`model.core.a3` -> model/core/a3.py), or None if it is not one."""
    base = ROOT.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(project modules, top-level names of other modules) that a file imports anywhere in it."""
    name = module_name(path)
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    local, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from . import x`, `from ..core import y`
                parts = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [(target, [a.name for a in node.names])]
        else:
            continue
        for target, names in targets:
            if target == "__future__":
                continue
            if module_file(target.split(".")[0]) is None:
                other.add(target.split(".")[0])
                continue
            parts = target.split(".")
            local |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}  # the packages on the way
            local |= {f"{target}.{n}" for n in names if module_file(f"{target}.{n}")}  # submodules
    return {m for m in local if module_file(m)}, other


def code_files() -> tuple[list[Path], set[str]]:
    """(app.py, every .py file of app/ and the model/ modules they reach; their other imports)."""
    start = [ROOT / APP_FILE] + sorted(p for p in (ROOT / APP_DIR).rglob("*.py") if not SKIP_PARTS & set(p.parts))
    seen, other, todo = set(start), set(), list(start)
    while todo:
        local, ext = imports_of(todo.pop())
        other |= ext
        for m in local:
            p = module_file(m)
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return sorted(seen), other


# ----------------------------------------------------------------------------------------------
# requirements

def normalize(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()  # PEP 503


def repo_pins() -> dict[str, str]:
    """normalized name -> its line in requirements.txt, in file order."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            pins[normalize(re.split(r"[=<>!~;\[ ]", line)[0])] = line
    return pins


def needed_distributions(top_level: set[str], providers: dict[str, list[str]]) -> set[str]:
    """Distributions (normalized) that provide these imports, with everything they require."""
    from packaging.requirements import Requirement

    stdlib = set(sys.stdlib_module_names)
    todo = []
    for name in sorted(top_level - stdlib - OPTIONAL_IMPORTS):
        if name not in providers:
            raise StageError(f"the app imports `{name}`, which no installed package provides: install it and "
                             "pin it in requirements.txt")
        todo += providers[name]
    needed = set()
    while todo:
        dist = normalize(todo.pop())
        if dist in needed:
            continue
        needed.add(dist)
        if dist in SDK_PROVIDED:  # the SDK brings these with their own dependencies
            continue
        for r in metadata.requires(dist) or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return needed


def requirements_text(hw_name: str, top_level: set[str]) -> str:
    """requirements.txt for the Space: the hardware's torch first, then the repo's pins it needs."""
    hw, pins, providers = HARDWARE[hw_name], repo_pins(), metadata.packages_distributions()
    needed = needed_distributions(top_level, providers) | EXTRA_NEEDED
    direct = {normalize(d) for name in top_level - OPTIONAL_IMPORTS for d in providers.get(name, [])}
    for dist in sorted((direct | EXTRA_NEEDED) - SDK_PROVIDED - set(pins)):
        raise StageError(f"the app needs `{dist}` but requirements.txt does not pin it: add `{dist}==VERSION` there")
    lines = [f"# Staged by scripts/stage_space.py for {hw_name}; the Space installs this file with pip.",
             "# gradio is not listed: the Gradio SDK installs it at README.md's sdk_version."]
    lines += [hw.index] if hw.index else []
    lines.append(hw.torch)
    lines += [line for dist, line in pins.items() if dist in needed and dist != "torch" and dist not in SDK_PROVIDED]
    lines += list(hw.extra)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# checkpoints, README, .gitattributes

def menu_checkpoints() -> list[Path]:
    """The app menu's checkpoint folders under assets/ (not $A3_MODEL_DIR, not the random fallback)."""
    from app import model_menu

    if model_menu.a3_section(model_menu.SHIPPED) is None:
        raise StageError(f"{model_menu.SHIPPED.relative_to(ROOT)} is missing or not an A3 checkpoint; restore it "
                         "(git checkout -- assets/) before staging: the Space would start on random weights")
    saved = os.environ.pop("A3_MODEL_DIR", None)
    try:
        entries = model_menu.available_models()
    finally:
        if saved is not None:
            os.environ["A3_MODEL_DIR"] = saved
    assets = ASSETS.resolve()
    return [e.path.resolve() for e in entries if e.path.resolve().parent == assets]


def split_front_matter(text: str) -> tuple[dict, str]:
    import yaml

    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    meta = yaml.safe_load(m.group(1)) if m else None
    if not isinstance(meta, dict):
        raise StageError("README.md does not start with a YAML front matter block (--- ... ---) holding the "
                         "Space's settings (title, sdk, sdk_version, app_file, ...); restore it")
    return meta, text[m.end():]


def card_summary(ckpt: Path) -> str:
    """The first sentence of a checkpoint's model card, after its title."""
    card = ckpt / "README.md"
    if not card.is_file():
        return ""
    body = re.sub(r"^---\n.*?\n---\n", "", card.read_text(encoding="utf-8"), flags=re.S)
    paragraphs = [p for p in re.split(r"\n\s*\n", body) if p.strip() and not p.lstrip().startswith("#")]
    text = " ".join(paragraphs[0].split()) if paragraphs else ""
    m = re.match(r"(.+?\.)(\s|$)", text)
    return m.group(1) if m else text


def readme_text(hw_name: str, checkpoints: list[Path]) -> str:
    import yaml

    from model.backbones import smollm_base

    hw = HARDWARE[hw_name]
    meta, _ = split_front_matter((ROOT / "README.md").read_text(encoding="utf-8"))
    short = str(meta.get("short_description", ""))
    if not 0 < len(short) <= SHORT_DESCRIPTION_MAX:
        raise StageError(f"README.md's short_description has {len(short)} characters; the Hub takes 1 to "
                         f"{SHORT_DESCRIPTION_MAX}: shorten it there")
    if meta.get("app_file") != APP_FILE:
        raise StageError(f"README.md's app_file is {meta.get('app_file')!r}; set it to {APP_FILE!r}")
    meta["python_version"] = hw.python
    meta["suggested_hardware"] = hw.flavor
    models = []
    for ckpt in checkpoints:
        line = f"- **{ckpt.name}**: {card_summary(ckpt) or 'an A3 checkpoint'}"
        a3 = json_section(ckpt)
        if a3.get("base_model") == smollm_base.REF:
            line += (f" It runs over the SmolLM2-135M-Instruct base converted from the PyPI wheel "
                     f"`{smollm_base.PACKAGE}=={smollm_base.VERSION}`; the menu marks it when that base is not on the machine.")
        models.append(line)
    body = string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        models="\n".join(models), hardware=hw.note)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    return f"---\n{front}---\n\n{body}"


def json_section(ckpt: Path) -> dict:
    return json.loads((ckpt / "config.json").read_text()).get("a3") or {}


def is_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\0" in f.read(8000)  # git's own test: a NUL byte in the first 8000 bytes


def gitattributes_text(out: Path, files: list[str]) -> str:
    lines = ["# Git LFS: the Hub takes files of 10 MB or more, and binary files, only through LFS (or Xet)."]
    lines += [f"{p} {LFS_ATTRS}" for p in BINARY_PATTERNS]
    for rel in files:
        path = out / rel
        if (path.stat().st_size >= LFS_LIMIT or is_binary(path)) and \
                not any(fnmatch.fnmatchcase(path.name, p) for p in BINARY_PATTERNS):
            if re.search(r"\s", rel):
                raise StageError(f"{rel} needs LFS but has white space in its path; rename it")
            lines.append(f"{rel} {LFS_ATTRS}")  # a path with a slash is anchored at the folder's root
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# staging

def spaces_first(source: str) -> str:
    """app.py's text with a guarded `import spaces` before its first import, unless that import is spaces."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Try)):
            inner = node.body if isinstance(node, ast.Try) else [node]
            if any(isinstance(n, ast.Import) and any(a.name == "spaces" for a in n.names) for n in inner):
                return source
            lines = source.splitlines(keepends=True)
            return "".join(lines[:node.lineno - 1]) + SPACES_FIRST + "".join(lines[node.lineno - 1:])
    return SPACES_FIRST + source


def check_out_dir(out: Path, overwrite: bool) -> None:
    out = out.resolve()
    sources = [ROOT / APP_DIR, ROOT / "model", ASSETS, ROOT / "space"]
    if out == ROOT or ROOT.is_relative_to(out) or any(out.is_relative_to(s) for s in sources):
        raise StageError(f"{out} is the repository, holds it, or lies inside a folder that is staged; "
                         "pick a folder elsewhere, e.g. /tmp/a3-space")
    if out.exists() and not out.is_dir():
        raise StageError(f"{out} is a file; pick a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise StageError(f"{out} is not empty; pick a new folder, or pass --overwrite to delete it first")
        if not all((out / f).is_file() for f in (APP_FILE, "README.md", ".gitattributes", "requirements.txt")):
            raise StageError(f"{out} does not look like an earlier stage (app.py, README.md, requirements.txt, "
                             ".gitattributes), so --overwrite leaves it alone; pick a new folder or empty it yourself")
        shutil.rmtree(out)


def stage(out: str | Path, hw_name: str, overwrite: bool = False) -> list[tuple[str, int]]:
    """Write the Space's files into `out`; return (path relative to out, size in bytes) of each."""
    if hw_name not in HARDWARE:
        raise StageError(f"unknown hardware {hw_name!r}; pick one of {', '.join(sorted(HARDWARE))}")
    out = Path(out)
    check_out_dir(out, overwrite)
    code, top_level = code_files()
    checkpoints = menu_checkpoints()
    if not EXAMPLES.is_dir() or not any(EXAMPLES.glob("*.txt")):
        raise StageError(f"{EXAMPLES.relative_to(ROOT)} has no example stories (*.txt); restore them")
    copies = [p for p in code if p != ROOT / APP_FILE]
    copies += [p for p in sorted((ROOT / APP_DIR).rglob("*")) if p.is_file() and p.suffix not in SKIP_SUFFIXES
               and not SKIP_PARTS & set(p.parts) and p not in code]  # the app's non-Python files, if any
    for folder in checkpoints + [EXAMPLES]:
        copies += [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")
                   and not SKIP_PARTS & set(p.parts)]
    out.mkdir(parents=True, exist_ok=True)
    for src in copies:
        dst = out / src.relative_to(ROOT)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    app_source = (ROOT / APP_FILE).read_text(encoding="utf-8")
    (out / APP_FILE).write_text(spaces_first(app_source) if HARDWARE[hw_name].zero_gpu else app_source,
                                encoding="utf-8")
    (out / "README.md").write_text(readme_text(hw_name, checkpoints), encoding="utf-8")
    (out / "requirements.txt").write_text(requirements_text(hw_name, top_level))
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    (out / ".gitattributes").write_text(gitattributes_text(out, files))
    files.append(".gitattributes")
    return [(rel, (out / rel).stat().st_size) for rel in sorted(files)]


def upload(out: Path, repo: str, hw_name: str, token: str) -> str:
    """Create the Space if needed and make its files exactly the staged ones; the Space's address."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo, repo_type="space", space_sdk="gradio", space_hardware=HARDWARE[hw_name].flavor,
                        exist_ok=True, token=token)
        api.upload_folder(folder_path=str(out), repo_id=repo, repo_type="space", token=token,
                          commit_message=f"Deploy A3 Studio ({hw_name}){git_revision()}", delete_patterns="*")
    except Exception as e:  # noqa: BLE001 -- hub errors come in many classes; each needs the same advice
        raise StageError(f"uploading to the Space {repo} failed ({type(e).__name__}: {e}); check that $HF_TOKEN "
                         f"has write access to {repo.split('/')[0]} and that huggingface.co is reachable") from e
    return f"https://huggingface.co/spaces/{repo}"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return ""
    return f" from {rev.stdout.strip()}" if rev.returncode == 0 and rev.stdout.strip() else ""


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="What the folder holds, per hardware: the top of scripts/stage_space.py.")
    p.add_argument("out", metavar="OUT_DIR", help="folder to stage into: absent or empty (see --overwrite)")
    p.add_argument("--hardware", required=True, choices=sorted(HARDWARE),
                   help="cpu-basic: the free CPU and torch's CPU build; zero-gpu: ZeroGPU, Python 3.12 and a "
                        "torch it supports (the runtime provides spaces)")
    p.add_argument("--repo", metavar="USER/NAME", help="the Space to upload to (created if missing); needs $HF_TOKEN")
    p.add_argument("--dry-run", action="store_true", help="stop after staging, even when --repo is given")
    p.add_argument("--overwrite", action="store_true", help="delete OUT_DIR first when it is not empty")
    a = p.parse_args(argv)
    if a.repo and not re.fullmatch(r"[\w.-]+/[\w.-]+", a.repo):
        p.error(f"--repo {a.repo!r} is not USER/NAME; pass e.g. --repo alice/a3-studio")
    token = os.environ.get("HF_TOKEN", "").strip()
    upload_now = bool(a.repo) and not a.dry_run
    if upload_now and not token:
        sys.exit(f"error: uploading to {a.repo} needs a Hugging Face token with write access in $HF_TOKEN "
                 "(create one at https://huggingface.co/settings/tokens); or pass --dry-run to stage only")
    try:
        files = stage(a.out, a.hardware, a.overwrite)
    except StageError as e:
        sys.exit(f"error: {e}")
    width = max(len(rel) for rel, _ in files)
    for rel, size in files:
        print(f"{rel:<{width}}  {size:>12,}")
    total = sum(size for _, size in files)
    print(f"staged {len(files)} files, {total:,} bytes, for {a.hardware} in {Path(a.out).resolve()}")
    if not upload_now:
        print("dry run: nothing uploaded" if a.repo else "not uploaded (pass --repo USER/NAME to upload)")
        return
    try:
        url = upload(Path(a.out), a.repo, a.hardware, token)
    except StageError as e:
        sys.exit(f"error: {e}")
    print(f"uploaded: {url} (Settings > Hardware should say {HARDWARE[a.hardware].flavor})")


if __name__ == "__main__":
    main()
