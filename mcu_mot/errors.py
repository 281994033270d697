"""The one exception type users see: its message is printed on one line and the CLI exits non-zero."""


class MotError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
