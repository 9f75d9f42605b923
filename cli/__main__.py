"""`python -m runstream.cli`."""

from runstream.cli import main

main()
