"""scripts/stage_space.py: the staged folder for each hardware passes a checker written from the
Hub's documented rules, and the app starts from it; uploading is checked against a mock HfApi.

The checker (`hub_problems`, `project_problems`) is written here, apart from the stage code, from:
- https://huggingface.co/docs/hub/spaces-config-reference: the front matter keys; colorFrom/colorTo
  in red, yellow, green, blue, indigo, purple, pink, gray; emoji "emoji-only"; python_version
  "Any valid Python 3.x or 3.x.x version"; suggested_hardware "must be a valid hardware flavor"
  (the page's list, plus `zero-a10g`, ZeroGPU's flavor in huggingface_hub's SpaceHardware);
- the Hub refuses a short_description of more than 60 characters (issue audit);
- https://huggingface.co/docs/hub/spaces-zerogpu: Gradio SDK only; Python 3.12.12 or 3.10.13;
  PyTorch 2.8.0, 2.9.1, 2.10.0 or 2.11.0; `import spaces`;
- https://huggingface.co/docs/hub/spaces-dependencies: requirements.txt at the root; gradio comes
  from sdk_version;
- https://huggingface.co/docs/hub/spaces-github-actions: "For files larger than 10MB, Spaces
  requires Git-LFS"; the Hub's git refuses binary files outside LFS ("Your push was rejected
  because it contains binary files", huggingface/huggingface_hub#1404);
- the project: no tests, training, evaluation, configs, scripts, docs, runs or data; only the
  menu's checkpoints; every library module staged is one the app imports, and each import resolves.
No network: huggingface_hub's HfApi is replaced by a recorder.
"""
from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HARDWARES = ("cpu-basic", "zero-gpu")

CONFIG_KEYS = {"title", "emoji", "colorFrom", "colorTo", "sdk", "python_version", "sdk_version",
               "suggested_hardware", "suggested_storage", "app_file", "app_build_command", "app_port", "base_path",
               "fullWidth", "header", "short_description", "models", "datasets", "tags", "thumbnail", "pinned",
               "hf_oauth", "hf_oauth_scopes", "hf_oauth_expiration_minutes", "hf_oauth_authorized_org",
               "disable_embedding", "startup_duration_timeout", "custom_headers", "preload_from_hub",
               "license"}  # license: repo-card metadata, which Spaces show too
COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
FLAVORS = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8",
           "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large", "a100x4", "a100x8", "zero-a10g"}
ZERO_PYTHON = {"3.12.12", "3.10.13"}
ZERO_TORCH = {"2.8.0", "2.9.1", "2.10.0", "2.11.0"}
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
EXPECTED_FLAVOR = {"cpu-basic": "cpu-basic", "zero-gpu": "zero-a10g"}
SHORT_MAX = 60
LFS_LIMIT = 10_000_000  # bytes; "larger than 10MB"
UNPINNED_OK: set[str] = set()  # every requirement is pinned
FORBIDDEN_DIRS = {"tests", "configs", "scripts", "docs", "runs", "data", ".ci", ".git", "model/training",
                  "model/evaluation", "__pycache__"}
FORBIDDEN_FILES = ("test_*.py", "*_test.py", "conftest.py", "*.pyc", "model/train.py", "model/eval.py", "model/bench.py",
                   "model/data.py", "model/metrics.py", "model/corpus/cli.py", "model/corpus/brown.py")


# ----------------------------------------------------------------------------------------------
# the checker

def front_matter(text: str) -> dict | None:
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    meta = yaml.safe_load(m.group(1)) if m else None
    return meta if isinstance(meta, dict) else None


def gitattributes_match(pattern: str, rel: str) -> bool:
    """gitattributes' matching: a pattern without a slash matches the file name at any depth; one
    with a slash matches the whole path from the folder's root, * and ? never crossing a slash and
    ** spanning folders."""
    if "/" not in pattern:
        return fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], pattern)
    pat, out, i = pattern.lstrip("/"), "", 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pat.startswith("/**", i) and i + 3 == len(pat):
            out, i = out + "/.*", i + 3
        elif pat[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pat[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pat[i] == "[" and "]" in pat[i + 2:]:
            j = pat.index("]", i + 2)
            body = pat[i + 1:j]
            out, i = out + "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", j + 1
        else:
            out, i = out + re.escape(pat[i]), i + 1
    return re.fullmatch(out, rel) is not None


def lfs_tracked(folder: Path, rel: str) -> bool:
    """Whether .gitattributes stores `rel` with LFS (the last matching line that sets `filter` wins)."""
    path, tracked = folder / ".gitattributes", False
    for line in path.read_text().splitlines() if path.is_file() else []:
        pattern, *attrs = line.split() or [""]
        if not pattern or pattern.startswith("#") or not gitattributes_match(pattern, rel):
            continue
        for a in attrs:
            if a.startswith("filter=") or a in ("-filter", "!filter"):
                tracked = a == "filter=lfs"
    return tracked


def is_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\0" in f.read(8000)


def requirement_lines(folder: Path) -> tuple[list[str], dict[str, str]]:
    """(pip option lines, normalized name -> version spec) of requirements.txt."""
    options, reqs = [], {}
    for line in (folder / "requirements.txt").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)", line)
        reqs[re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else line] = m.group(2) if m else "?"
    return options, reqs


def hub_problems(folder: Path, hardware: str) -> list[str]:
    """What the Hub (or ZeroGPU) would refuse or break on, by its documented rules."""
    problems = []
    readme = folder / "README.md"
    meta = front_matter(readme.read_text(encoding="utf-8")) if readme.is_file() else None
    if meta is None:
        return ["README.md with a YAML front matter block is missing"]
    problems += [f"front matter key {k!r} is not in the Spaces configuration reference" for k in meta
                 if k not in CONFIG_KEYS]
    for key in ("title", "sdk", "sdk_version", "app_file", "short_description", "python_version",
                "suggested_hardware"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            problems.append(f"front matter {key} must be a non-empty string, is {meta.get(key)!r}")
    if meta.get("sdk") != "gradio":
        problems.append(f"sdk is {meta.get('sdk')!r}; ZeroGPU and this app need gradio")
    for key in ("colorFrom", "colorTo"):
        if key in meta and meta[key] not in COLORS:
            problems.append(f"{key} {meta[key]!r} is not one of {sorted(COLORS)}")
    if "emoji" in meta and (not isinstance(meta["emoji"], str) or not meta["emoji"] or meta["emoji"].isascii()
                            or any(c.isascii() for c in meta["emoji"])):
        problems.append(f"emoji {meta['emoji']!r} is not emoji-only")
    short = meta.get("short_description")
    if isinstance(short, str) and len(short) > SHORT_MAX:
        problems.append(f"short_description has {len(short)} characters, the Hub takes at most {SHORT_MAX}")
    py = meta.get("python_version")
    if isinstance(py, str) and not re.fullmatch(r"3\.\d+(\.\d+)?", py):
        problems.append(f"python_version {py!r} is not 3.x or 3.x.x")
    if hardware == "zero-gpu" and py not in ZERO_PYTHON:
        problems.append(f"python_version {py!r} is not one ZeroGPU runs ({sorted(ZERO_PYTHON)})")
    flavor = meta.get("suggested_hardware")
    if flavor not in FLAVORS:
        problems.append(f"suggested_hardware {flavor!r} is not a hardware flavor")
    elif flavor != EXPECTED_FLAVOR[hardware]:
        problems.append(f"suggested_hardware {flavor!r} is not {EXPECTED_FLAVOR[hardware]!r} for {hardware}")
    if "tags" in meta and not (isinstance(meta["tags"], list) and all(isinstance(t, str) for t in meta["tags"])):
        problems.append("tags must be a list of strings")
    app_file = folder / str(meta.get("app_file", ""))
    if not (app_file.is_file() and app_file.suffix == ".py"):
        problems.append(f"app_file {meta.get('app_file')!r} is not a Python file in the folder")

    if not (folder / "requirements.txt").is_file():
        return problems + ["requirements.txt is missing"]
    options, reqs = requirement_lines(folder)
    for name, spec in reqs.items():
        if not re.fullmatch(r"==[0-9][0-9A-Za-z.+!-]*", spec) and name not in UNPINNED_OK:
            problems.append(f"requirement {name}{spec} is not pinned with ==")
        if any(s in spec for s in ("file:", "/", "@")) or name.startswith("."):
            problems.append(f"requirement {name}{spec} points at a local path or URL")
    if "gradio" in reqs and reqs["gradio"] != f"=={meta.get('sdk_version')}":
        problems.append(f"gradio{reqs['gradio']} fights the SDK's gradio {meta.get('sdk_version')}")
    torch = reqs.get("torch", "").removeprefix("==")
    if not torch:
        problems.append("torch is not pinned in requirements.txt")
    elif hardware == "zero-gpu":
        if torch not in ZERO_TORCH:
            problems.append(f"torch {torch} is not in ZeroGPU's list {sorted(ZERO_TORCH)}")
        if "spaces" in reqs:
            problems.append("spaces is in requirements.txt; the ZeroGPU runtime provides it (at its own version)")
    elif not (torch.endswith("+cpu") and any(CPU_INDEX in o for o in options)):
        problems.append(f"torch {torch} is not the CPU build (==X+cpu with the index {CPU_INDEX})")

    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        size = path.stat().st_size
        if (size >= LFS_LIMIT or is_binary(path)) and not lfs_tracked(folder, rel):
            problems.append(f"{rel} ({size:,} bytes, {'binary' if is_binary(path) else 'text'}) is not "
                            "covered by an LFS pattern in .gitattributes")
    return problems


def project_modules(folder: Path) -> dict[str, Path]:
    mods = {}
    for p in list(folder.glob("app/**/*.py")) + list(folder.glob("model/**/*.py")):
        mods[".".join(p.relative_to(folder).with_suffix("").parts).removesuffix(".__init__")] = p
    return mods


def project_imports(path: Path, name: str) -> set[str]:
    """Every app.* / model.* name a file imports (lazy imports too), with the packages on the way."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[:len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            parts = n.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {n for n in found if n.split(".")[0] in ("app", "model")}


def defines(path: Path, name: str) -> bool:
    """Whether a module defines `name` (anywhere in it; a module-level __getattr__ defines anything)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return name in names or "__getattr__" in names


def project_problems(folder: Path) -> list[str]:
    """Test/training files, checkpoints the menu does not list, library modules the app does not reach."""
    problems = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_dir() and (rel in FORBIDDEN_DIRS or path.name == "__pycache__"):
            problems.append(f"{rel}/ is not part of the Space")
        elif path.is_file() and any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(path.name, p)
                                    for p in FORBIDDEN_FILES):
            problems.append(f"{rel} is a test or training-only file")
    for cfg in sorted(folder.glob("assets/*/config.json")):
        if "a3" not in json.loads(cfg.read_text()):
            problems.append(f"{cfg.parent.relative_to(folder)} is not an A3 checkpoint: the menu never offers it")
    if not (folder / "assets/a3-austen-tiny/config.json").is_file():
        problems.append("the shipped model assets/a3-austen-tiny is missing")
    if not list(folder.glob("assets/examples/*.txt")):
        problems.append("assets/examples/ has no example stories")
    mods = project_modules(folder)
    start = [(folder / "app.py", "__main__")] + [(p, m) for m, p in mods.items() if m.split(".")[0] == "app"]
    reached, todo = {m for _, m in start}, list(start)
    while todo:
        path, name = todo.pop()
        for m in sorted(project_imports(path, name)):
            if m not in mods:
                parent, _, attr = m.rpartition(".")
                if parent not in mods or not defines(mods[parent], attr):
                    problems.append(f"{path.relative_to(folder)} imports {m}, which is not staged")
            elif m not in reached:
                reached.add(m)
                todo.append((mods[m], m))
    problems += [f"{mods[m].relative_to(folder)} is staged but the app never imports it"
                 for m in sorted(set(mods) - reached)]
    return problems


# ----------------------------------------------------------------------------------------------
# staging

def load_stage_module():
    spec = importlib.util.spec_from_file_location("stage_space", ROOT / "scripts" / "stage_space.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def stage_space():
    return load_stage_module()


@pytest.fixture(scope="module")
def folders(stage_space, tmp_path_factory):
    """folders(hardware) -> the folder staged for it, staged once per module."""
    cache = {}

    def get(hardware: str) -> Path:
        if hardware not in cache:
            cache[hardware] = tmp_path_factory.mktemp(hardware) / "space"
            stage_space.stage(cache[hardware], hardware)
        return cache[hardware]
    return get


@pytest.fixture(params=HARDWARES)
def staged(request, folders) -> tuple[str, Path]:
    """(hardware, the folder staged for it)."""
    return request.param, folders(request.param)


def test_staged_folder_passes_the_hub_rules(staged):
    """Front matter, requirements and LFS coverage as the Hub and ZeroGPU document them."""
    hardware, out = staged
    problems = hub_problems(out, hardware)
    assert not problems, f"the {hardware} folder breaks the Hub's rules:\n" + "\n".join(problems)


def test_staged_folder_holds_only_the_space(staged):
    """No tests or training code, only the menu's checkpoints, and exactly the library the app imports."""
    hardware, out = staged
    problems = project_problems(out)
    assert not problems, f"the {hardware} folder ships the wrong files:\n" + "\n".join(problems)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for must in ("app.py", "README.md", "requirements.txt", ".gitattributes", "app/ui.py",
                 "assets/a3-austen-tiny/model.safetensors", "model/core/two_stream.py"):
        assert must in names, f"{must} is missing from the {hardware} folder"
    for never in ("assets/austen-base-tiny", "assets/diffusion-austen-tiny", "model/baselines"):
        assert not any(n.startswith(never) for n in names), f"{never} is not in the app's menu or imports, yet staged"


def test_requirements_pick_torch_for_the_hardware(staged):
    """cpu-basic: torch's CPU build from its index; zero-gpu: a torch ZeroGPU lists; neither lists
    spaces (ZeroGPU's runtime provides it)."""
    hardware, out = staged
    options, reqs = requirement_lines(out)
    if hardware == "cpu-basic":
        assert reqs["torch"].endswith("+cpu") and any(CPU_INDEX in o for o in options), \
            f"cpu-basic should install torch's CPU build, got torch{reqs['torch']} with options {options}"
        assert "spaces" not in reqs, "cpu-basic has no use for spaces"
    else:
        assert reqs["torch"].removeprefix("==") in ZERO_TORCH and not options, \
            f"zero-gpu should pin a ZeroGPU torch from PyPI, got torch{reqs['torch']} with options {options}"
        assert "spaces" not in reqs, "ZeroGPU's runtime provides spaces; listing it may fight the runtime's version"
    assert "gradio" not in reqs and "rouge-score" not in reqs, \
        f"gradio comes from the SDK and rouge-score is evaluation-only; requirements: {sorted(reqs)}"
    assert "gguf" in reqs, "the SmolLM2 adapter's base is read from a GGUF: gguf must be installed"


def test_checker_catches_each_broken_rule(folders, tmp_path):
    """The checker is not vacuous: each rule, broken in a copy of the ZeroGPU folder, is reported."""
    hardware, out = "zero-gpu", folders("zero-gpu")
    space = tmp_path / "space"
    shutil.copytree(out, space, ignore=shutil.ignore_patterns("*.safetensors"))  # keep the copies small
    def replace_in(name, old, new):
        return lambda f: (f / name).write_text((f / name).read_text(encoding="utf-8").replace(old, new),
                                               encoding="utf-8")

    def append_to(name, text):
        return lambda f: (f / name).open("a").write(text)

    breakages = [  # (what is broken, how, words the checker must say)
        ("a long short_description", replace_in("README.md", "short_description: ", "short_description: " + "x" * 61),
         "short_description has"),
        ("a Python ZeroGPU lacks", replace_in("README.md", "python_version: 3.12.12", "python_version: '3.11'"),
         "python_version '3.11' is not one"),
        ("python_version as a YAML number", replace_in("README.md", "python_version: 3.12.12", "python_version: 3.10"),
         "python_version must be a non-empty string"),
        ("a made-up flavor", replace_in("README.md", "zero-a10g", "zero-gpu"), "suggested_hardware 'zero-gpu'"),
        ("a torch ZeroGPU lacks", replace_in("requirements.txt", "torch==2.11.0", "torch==2.13.0"),
         "torch 2.13.0 is not in ZeroGPU"),
        ("an unpinned requirement", append_to("requirements.txt", "rich\n"), "rich is not pinned"),
        ("gradio against the SDK", append_to("requirements.txt", "gradio==5.0.0\n"), "fights the SDK"),
        ("spaces listed on ZeroGPU", append_to("requirements.txt", "spaces==0.51.3\n"), "the ZeroGPU runtime provides it"),
        ("a 10 MB file outside LFS", lambda f: (f / "assets/big.json").open("wb").truncate(LFS_LIMIT),
         "assets/big.json"),
        ("a binary file outside LFS", lambda f: (f / "app/blob.dat").write_bytes(b"\0\1\2"), "app/blob.dat"),
        ("no app file", lambda f: (f / "app.py").unlink(), "app_file 'app.py'"),
    ]
    for i, (rule, breakage, words) in enumerate(breakages):
        broken = tmp_path / f"broken{i}"
        shutil.copytree(space, broken)
        breakage(broken)
        problems = hub_problems(broken, hardware)
        assert any(words in p for p in problems), f"{rule} went unnoticed; the checker said {problems}"
    (space / "tests").mkdir()
    (space / "tests/test_x.py").write_text("")
    (space / "model/training").mkdir()
    (space / "model/training/loop.py").write_text("")
    (space / "assets/diffusion-austen-tiny").mkdir()
    (space / "assets/diffusion-austen-tiny/config.json").write_text('{"diffusion": {}}')
    (space / "app/extra.py").write_text("from model.core import nothing_here\n")
    problems = "\n".join(project_problems(space))
    for needle in ("tests/", "model/training/", "diffusion-austen-tiny", "model.core.nothing_here",
                   "model/training/loop.py is staged but"):
        assert needle in problems, f"the checker missed {needle!r}; it said:\n{problems}"


def test_gitattributes_matching_follows_git():
    """A slash-less pattern matches a file name at any depth; a pattern with a slash is anchored."""
    cases = [("*.safetensors", "assets/m/model.safetensors", True), ("*.bin", "x.bin.txt", False),
             ("assets/*.bin", "assets/x.bin", True), ("assets/*.bin", "assets/a/x.bin", False),
             ("/x.bin", "x.bin", True), ("/x.bin", "a/x.bin", False), ("assets/**/x.bin", "assets/a/b/x.bin", True),
             ("assets/**/x.bin", "assets/x.bin", True), ("assets/**", "assets/a/b", True),
             ("x[0-9].bin", "d/x7.bin", True), ("x[!0-9].bin", "x7.bin", False)]
    for pattern, rel, expected in cases:
        assert gitattributes_match(pattern, rel) is expected, f"{pattern!r} vs {rel!r} should be {expected}"


START = r"""
import json, os, runpy, socket, sys, urllib.request
folder, stub = sys.argv[1], sys.argv[2]
sys.path[:] = [folder] + [p for p in sys.path if p not in ("", ".", folder)]
if stub == "-":
    sys.modules["spaces"] = None  # not installed: `import spaces` raises ImportError
else:
    sys.path.insert(0, stub)
ns = runpy.run_path(os.path.join(folder, "app.py"), run_name="space_app")
with socket.socket() as s:  # a free port: other tests may hold gradio's default 7860
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
kw = dict(ns["launch_kwargs"](), server_name="127.0.0.1", server_port=port, prevent_thread_lock=True)
demo = ns["demo"]
demo.launch(**kw)
try:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    status = opener.open(demo.local_url, timeout=60).status
finally:
    demo.close()
spaces = sys.modules.get("spaces")
print(json.dumps({"status": status, "torch_before_spaces": getattr(spaces, "TORCH_FIRST", None),
                  "files": {n: getattr(m, "__file__", None) for n, m in sys.modules.items()
                            if m is not None and n.split(".")[0] in ("app", "model")}}))
"""
STUB = """import sys
TORCH_FIRST = "torch" in sys.modules  # ZeroGPU's spaces must come before torch


def GPU(fn=None, **kwargs):
    return fn if callable(fn) else (lambda f: f)
"""


def test_staged_app_starts_from_its_folder(staged, tmp_path):
    """The staged app.py builds the demo and serves its page using only the staged files; for
    ZeroGPU, `spaces` (a stub here) is imported before torch."""
    hardware, out = staged
    stub = "-"
    if hardware == "zero-gpu":
        (tmp_path / "stub").mkdir()
        (tmp_path / "stub/spaces.py").write_text(STUB)
        stub = str(tmp_path / "stub")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "A3_MODEL_DIR", "SPACE_ID")}
    env.update(GRADIO_ANALYTICS_ENABLED="False", A3_STUDIO_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1", A3_TORCH_THREADS="1")
    res = subprocess.run([sys.executable, "-c", START, str(out), stub], cwd=out, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"the staged {hardware} app did not start:\n{res.stderr[-4000:]}"
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, f"the page answered {report['status']}"
    outside = {n: f for n, f in report["files"].items() if f and not Path(f).resolve().is_relative_to(out.resolve())}
    assert not outside, f"the staged app imported project modules from outside its folder: {outside}"
    assert "app.ui" in report["files"] and "model.core.decode" in report["files"], \
        f"the app's modules were not imported: {sorted(report['files'])}"
    if hardware == "zero-gpu":
        assert report["torch_before_spaces"] is False, \
            "torch was imported before spaces; ZeroGPU needs `import spaces` first (app.py)"


def test_dry_run_stages_and_uploads_nothing(stage_space, tmp_path, monkeypatch, capsys):
    """--repo with --dry-run stops after staging: no token needed, the hub is never called."""
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: pytest.fail("--dry-run called the hub"))
    stage_space.main([str(tmp_path / "s"), "--hardware", "cpu-basic", "--repo", "alice/a3-studio", "--dry-run"])
    assert (tmp_path / "s/app.py").is_file() and (tmp_path / "s/README.md").is_file(), "--dry-run staged nothing"
    assert "dry run" in capsys.readouterr().out, "--dry-run should say that nothing was uploaded"


def test_upload_without_token_says_what_to_do(stage_space, tmp_path, monkeypatch):
    """A missing $HF_TOKEN stops before staging, naming the variable and --dry-run."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SystemExit) as e:
        stage_space.main([str(tmp_path / "s"), "--hardware", "zero-gpu", "--repo", "alice/a3-studio"])
    msg = str(e.value.code)
    assert "HF_TOKEN" in msg and "--dry-run" in msg and "settings/tokens" in msg, f"unclear message: {msg}"
    assert not (tmp_path / "s").exists(), "nothing should be staged when the upload cannot happen"


def test_upload_sends_the_staged_folder_to_the_space(stage_space, tmp_path, monkeypatch):
    """With a token, the Space is created if missing (gradio SDK) and the folder uploaded as a Space."""
    import huggingface_hub

    calls = []

    class Recorder:
        def __init__(self, *args, **kwargs):
            calls.append(("HfApi", args, kwargs))

        def create_repo(self, *args, **kwargs):
            calls.append(("create_repo", args, kwargs))

        def upload_folder(self, *args, **kwargs):
            calls.append(("upload_folder", args, kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    out = tmp_path / "s"
    stage_space.main([str(out), "--hardware", "zero-gpu", "--repo", "alice/a3-studio"])
    by_name = {name: (args, kwargs) for name, args, kwargs in calls}
    assert set(by_name) == {"HfApi", "create_repo", "upload_folder"}, f"unexpected hub calls: {calls}"
    args, kw = by_name["create_repo"]
    assert (args[:1] or (kw.get("repo_id"),)) == ("alice/a3-studio",) and kw.get("repo_type") == "space" and \
        kw.get("space_sdk") == "gradio" and kw.get("exist_ok") is True and kw.get("token") == "hf_test_token", \
        f"create_repo got {args} {kw}"
    args, kw = by_name["upload_folder"]
    assert Path(kw.get("folder_path")) == out and kw.get("repo_id") == "alice/a3-studio" and \
        kw.get("repo_type") == "space" and kw.get("token") == "hf_test_token", f"upload_folder got {args} {kw}"
    assert (out / "app.py").is_file(), "the uploaded folder was not staged first"


def test_refuses_a_folder_that_is_not_empty(stage_space, tmp_path):
    """Staging never mixes with old files: a non-empty folder needs --overwrite, which deletes only
    an earlier stage; folders inside the repository's staged sources are refused."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        with pytest.raises(SystemExit) as e:
            stage_space.main([str(other), "--hardware", "cpu-basic", *extra])
        assert ("--overwrite" if not extra else "earlier stage") in str(e.value.code), \
            f"the message should say what to do: {e.value.code}"
    assert (other / "notes.txt").read_text() == "keep me", "a folder that is not a stage was touched"
    stage_space.main([str(tmp_path / "s"), "--hardware", "cpu-basic"])
    (tmp_path / "s/stale.txt").write_text("from an old deploy")
    stage_space.main([str(tmp_path / "s"), "--hardware", "zero-gpu", "--overwrite"])
    assert not (tmp_path / "s/stale.txt").exists(), "--overwrite left a file of the earlier stage"
    assert "torch==2.11.0" in (tmp_path / "s/requirements.txt").read_text(), "--overwrite did not stage for zero-gpu"
    with pytest.raises(SystemExit) as e:
        stage_space.main([str(ROOT / "app" / "x"), "--hardware", "cpu-basic"])
    assert "elsewhere" in str(e.value.code), f"staging inside app/ should be refused: {e.value.code}"
