"""`python cli.py ARGS` from a checkout runs the `synthgen` command (defined in synthgen/cli.py)."""

from synthgen.cli import main

if __name__ == "__main__":
    main()
