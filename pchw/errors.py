"""The one exception type for errors a user can cause."""

__all__ = ["PchwError"]


class PchwError(Exception):
    """A problem with the user's input: a malformed description, a bad option, a missing file.

    The message is one line that names where the problem is (file and field where known) and,
    where possible, what would be accepted instead. The CLI prints it and exits non-zero.
    """
