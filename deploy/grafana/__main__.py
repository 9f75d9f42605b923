"""`python -m runstream.deploy.grafana [--check]`: regenerate (or check) the generated files."""

from __future__ import annotations

import sys

from runstream.deploy.grafana import HERE, stale_files, write_files


def main(argv: list[str]) -> int:
    """Write what changed; with `--check`, only list stale files and exit 1 if there are any."""
    if "--check" in argv:
        stale = stale_files()
        for path in stale:
            print(f"stale: {HERE / path}")
        return 1 if stale else 0
    for written in write_files():
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
