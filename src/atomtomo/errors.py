"""Exceptions that separate the user's mistakes from ours.

The command line turns :class:`InputError` into a one-line message and exit status 2; any other
exception is an internal error (exit status 1).
"""


class InputError(ValueError):
    """Bad input: a file, a value or an option that the user can fix."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for
    one-line errors that quote a library's exception."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
