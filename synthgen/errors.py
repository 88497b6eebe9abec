"""The two kinds of failure a user can meet, and the exit codes the CLI gives them.

Library code raises these (or subclasses) with a one-line message that names the bad value in
the library's terms: an `InputError` about one parameter carries its name as `option` (the
message then reads "centers /x.mat: no such file"), and `OutputExistsError` says an output is
there already. The CLI prints the line as its flags name things ("--centers /x.mat: ...",
"...; pass --overwrite to replace it") and exits with `exit_code`, never with a traceback unless
`--debug` is given.
"""

from __future__ import annotations


class SynthgenError(Exception):
    """Something went wrong while doing valid work (disk full, a renderer that won't start)."""

    exit_code = 1


class InputError(SynthgenError):
    """The user's input is wrong: bad arguments, missing or malformed files, refused outputs.

    option: the parameter the message is about (its keyword in the library; the CLI flag is
    the same name with dashes), prefixed to the message.
    """

    exit_code = 2

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.message, self.option = message, option

    def __str__(self) -> str:
        return self.message if self.option is None else f"{self.option} {self.message}"


class OutputExistsError(InputError):
    """An output is there already and replacing it was not asked for (`overwrite`)."""

    def __init__(self, path) -> None:
        super().__init__(f"{path} already exists (overwrite replaces it)")
        self.path = path


class UnfinishedRunError(InputError):
    """An interrupted run's working directory is in the way (`resume` it, or `overwrite`)."""

    def __init__(self, path) -> None:
        super().__init__(f"{path} holds an unfinished run; resume it (resume) or discard it (overwrite)")
        self.path = path


def command_line_text(error: SynthgenError) -> str:
    """An error's message as the command line words it: parameters named by their flags."""
    if isinstance(error, OutputExistsError):
        return f"{error.path} already exists; pass --overwrite to replace it"
    if isinstance(error, UnfinishedRunError):
        return f"{error.path} holds an unfinished run; resume it (--resume) or pass --overwrite to discard it"
    if isinstance(error, InputError) and error.option is not None:
        return f"--{error.option.replace('_', '-')} {error.message}"
    return str(error)
