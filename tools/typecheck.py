"""Run `mypy --strict` over the project as the packages it installs.

The import names are mapped from top-level folders (pyproject `package-dir`), which mypy cannot
follow from the source tree; this builds a tree of symlinks under build/typecheck that mirrors the
installed layout, then checks it together with tests, examples and benchmarks.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def build_tree() -> None:
    """Symlink every mapped package folder at its import path."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setuptools["package-dir"]
    shutil.rmtree(TREE, ignore_errors=True)
    for package, folder in sorted(mapping.items()):
        target = TREE.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in (ROOT / folder).glob("*.py*"):
            (target / source.name).symlink_to(source)


def main() -> int:
    """Build the tree and run mypy; return its exit code. One run at a time per checkout."""
    TREE.parent.mkdir(parents=True, exist_ok=True)
    with open(TREE.parent / "typecheck.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _check()


def _check() -> int:
    build_tree()
    folders = ("tests", "examples", "benchmarks", "tools")
    extra = [p for p in folders if any((ROOT / p).rglob("*.py"))]
    command = [sys.executable, "-m", "mypy", str(TREE / "runstream"), *extra, *sys.argv[1:]]
    return subprocess.call(command, cwd=ROOT, env={**os.environ, "MYPYPATH": str(TREE)})


if __name__ == "__main__":
    sys.exit(main())
