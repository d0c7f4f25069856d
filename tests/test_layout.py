"""The house rules of the layout: one top-level package, every folder packaged, no import cycles,
the sender, the receiver and the relay never import each other (all three share facewire.shared)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _modules() -> dict[str, Path]:
    """Every module of the installed package by its import name."""
    found = {}
    for package, folder in SETUPTOOLS["package-dir"].items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, name: str) -> set[str]:
    """facewire modules a file imports, at the top or inside functions (a lazy import is still a dependency)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in out if m.startswith("facewire.")}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    folders = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert folders == set(SETUPTOOLS["packages"]), "pyproject.toml [tool.setuptools] packages must list every package"


def test_no_import_cycles_and_the_two_sides_stay_apart() -> None:
    modules = _modules()
    graph = {name: {m for m in _imports(path, name) if m in modules and m != name} for name, path in modules.items()}
    for name, deps in graph.items():
        if name.startswith("facewire.sender"):
            assert not any(d.startswith("facewire.receiver") for d in deps), f"{name} imports the receiver"
        if name.startswith("facewire.receiver"):
            assert not any(d.startswith("facewire.sender") for d in deps), f"{name} imports the sender"
        if name.startswith("facewire.shared"):
            assert not any(d.startswith(("facewire.sender", "facewire.receiver", "facewire.relay")) for d in deps), \
                f"{name} imports a side"
        if name.startswith("facewire.relay"):
            assert not any(d.startswith(("facewire.sender", "facewire.receiver")) for d in deps), f"{name} imports a side"
        if name.startswith(("facewire.sender", "facewire.receiver")):
            assert not any(d.startswith("facewire.relay") for d in deps), f"{name} imports the relay"
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]) if dep in path else dep)
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: building in the checkout would leave build/ behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *SETUPTOOLS["package-dir"].values()):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("facewire-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"facewire", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "facewire/models/manifest.toml" in names
    assert {"facewire/models/expression_basis.npz", "facewire/models/expression_basis.json"} <= set(names)  # the face code's basis
    assert "facewire/shared/codec/expression/field.py" in names
    assert "facewire/shared/render/mesh.py" in names and "facewire/sender/cli.py" in names
    assert "facewire/relay/server.py" in names


def test_every_module_imports_under_its_facewire_name_only(tmp_path: Path) -> None:
    """One copy of each module: nothing is importable, or imported, as a top-level sender/receiver/shared."""
    names = sorted(name for name in _modules() if not name.endswith((".cli", ".demo")))
    script = (f"import importlib, sys\nfor name in {names!r}: importlib.import_module(name)\n"
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'sender', 'receiver', 'shared', 'models'}))\n"
              "import importlib.util\nprint([n for n in ('sender', 'receiver', 'shared') if importlib.util.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout + out.stderr
