"""`python -m synthgen ARGS` runs the `synthgen` command."""

from synthgen.cli import main

main()
