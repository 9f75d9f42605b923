"""Every package the project imports is declared in pyproject.toml.

A package installed by hand on one machine hides a missing declaration until CI runs on a new
machine; this test fails on the machine where the import was written instead. An import counts
wherever it stands (module level, inside a function, behind `try`), in every Python file of the
project, its tests, examples, benchmarks and tools.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {".venv", "build", ".stack", ".git", "node_modules"}
FIRST_PARTY = {"runstream", "tests", "benchmarks", "examples", "tools"}


def normalized(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    """Every distribution pyproject.toml names, in the dependencies or in any extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return {normalized(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}


def python_files() -> Iterator[Path]:
    """The project's own Python files (not the virtual environment's, nor build output)."""
    for path in ROOT.rglob("*.py"):
        if not SKIPPED.intersection(path.relative_to(ROOT).parts):
            yield path


def imported_top_names(path: Path) -> set[str]:
    """The top-level names of every absolute import in one file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party_imports() -> dict[str, Path]:
    """Each third-party top-level import name, with the first file that imports it."""
    local = FIRST_PARTY | {p.name for p in ROOT.iterdir() if p.is_dir()}
    found: dict[str, Path] = {}
    for path in sorted(python_files()):
        for name in imported_top_names(path):
            if name in sys.stdlib_module_names or name in local or name == "__future__":
                continue
            found.setdefault(name, path.relative_to(ROOT))
    return found


def undeclared(imports: dict[str, Path], declared: set[str]) -> list[str]:
    """The imports no declared distribution provides, each with where it was seen.

    An installed import is provided by the distributions that ship it; one that is not installed
    here (an extra nobody installed) must be declared under its own name.
    """
    owners = packages_distributions()
    missing = []
    for name, where in sorted(imports.items()):
        candidates = owners.get(name) or [name]
        if not any(normalized(owner) in declared for owner in candidates):
            missing.append(f"{name} (imported in {where}; provided by {', '.join(candidates)})")
    return missing


def test_every_imported_package_is_declared_in_pyproject() -> None:
    imports = third_party_imports()
    assert "aiokafka" in imports  # the scan sees the project's own imports
    assert undeclared(imports, declared_distributions()) == []


def test_an_undeclared_import_is_reported(tmp_path: Path) -> None:
    declared = declared_distributions() - {"fastavro"}
    imports = {"fastavro": Path("schemas/_codec.py"), "not_a_real_package": Path("x.py")}
    assert undeclared(imports, declared) == [
        "fastavro (imported in schemas/_codec.py; provided by fastavro)",
        "not_a_real_package (imported in x.py; provided by not_a_real_package)",
    ]
