"""The tree shows the architecture: no import circle, `model/core` imports nothing above it, the
library never imports the app, docstrings that cite the design point at docs/DESIGN.md, the
README's and the design's layout sections name every package and module, each package's docstring
lists its modules, and no two modules share a file name."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(ROOT.glob("model/**/*.py")) + sorted(ROOT.glob("app/*.py")):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (type-checking-only imports included)."""
    mods = modules()
    edges = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                    target = ".".join(parts + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    hit = next((c for c in (f"{target}.{a.name}", target) if c in mods and c != m), None)
                    if hit:
                        edges[m].add(hit)
            elif isinstance(node, ast.Import):
                edges[m] |= {a.name for a in node.names if a.name in mods and a.name != m}
    return edges


def test_no_import_circle():
    edges, state, cycles = import_graph(), {}, []

    def visit(u, stack):
        state[u] = "open"
        for v in sorted(edges[u]):
            if state.get(v) == "open":
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v, stack + [v])
        state[u] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import circles: {cycles}"


def test_core_imports_nothing_above_it_and_the_library_never_imports_the_app():
    edges = import_graph()
    up = sorted((m, v) for m, vs in edges.items() for v in vs if m.startswith("model.core") and not v.startswith("model.core"))
    assert not up, f"model/core must not import from above it: {up}"
    app = sorted((m, v) for m, vs in edges.items() for v in vs if m.startswith("model") and v.startswith("app"))
    assert not app, f"the library must not import the app: {app}"


def test_design_citations_point_at_docs_design():
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in modules().values()
           for i, line in enumerate(p.read_text().splitlines(), 1)
           if "DESIGN.md" in line and "docs/DESIGN.md" not in line]
    assert not bad, f"these cite a DESIGN.md that is not docs/DESIGN.md: {bad}"
    assert (ROOT / "docs" / "DESIGN.md").is_file(), "docs/DESIGN.md is missing"


def test_layout_sections_name_every_package_and_module():
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    readme = (ROOT / "README.md").read_text()
    layout = re.search(r"## Layout\n(.*?)\n## ", readme, re.S)
    assert layout, "the README has no Layout section"
    for pkg in sorted(p.parent.name for p in ROOT.glob("model/*/__init__.py")):
        assert f"{pkg}/" in design and f"{pkg}/" in layout.group(1), f"model/{pkg}/ is missing from a layout section"
    for p in sorted(ROOT.glob("model/*/*.py")) + sorted(ROOT.glob("app/*.py")):
        if p.name != "__init__.py":
            assert p.stem in design, f"docs/DESIGN.md's layout does not mention {p.relative_to(ROOT)}"


def test_package_docstrings_list_their_modules():
    for init in sorted(ROOT.glob("model/*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        missing = [p.stem for p in sorted(init.parent.glob("*.py")) if p.name != "__init__.py"
                   and not re.search(rf"\b{p.stem}\b", doc)]
        assert not missing, f"{init.relative_to(ROOT)}'s docstring does not list {missing}"


def test_no_two_modules_share_a_file_name():
    seen: dict[str, list[str]] = {}
    for p in sorted(ROOT.glob("model/**/*.py")) + sorted(ROOT.glob("app/*.py")) + sorted(ROOT.glob("*.py")):
        if p.name != "__init__.py":
            seen.setdefault(p.name, []).append(str(p.relative_to(ROOT)))
    shared = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not shared, f"modules that share a file name (rename one): {shared}"
