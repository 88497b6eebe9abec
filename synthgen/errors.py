"""The two kinds of failure a user can meet, and the exit codes the CLI gives them.

Library code raises these (or subclasses) with a one-line message that names the bad value;
the CLI prints that line to stderr and exits with `exit_code`, never with a traceback unless
`--debug` is given.
"""


class SynthgenError(Exception):
    """Something went wrong while doing valid work (disk full, a renderer that won't start)."""

    exit_code = 1


class InputError(SynthgenError):
    """The user's input is wrong: bad arguments, missing or malformed files, refused outputs."""

    exit_code = 2
