"""The project's own error types.

Every failure caused by a user's input (a file, a config value, a checkpoint) is raised as a
:class:`CrossposeError` whose message names the file, the place inside it and the problem, so the
command line can print it as one line instead of a traceback.
"""

from __future__ import annotations

from os import PathLike


class CrossposeError(Exception):
    """Base class of every error crosspose raises on bad input."""


class DataFormatError(CrossposeError, ValueError):
    """A data file does not follow the format it claims to be in.

    Args:
        path: the offending file.
        problem: what is wrong, in words a user can act on.
        where: the place inside the file (``"row 12"``, ``"image 004645041.jpg"``, ``"annolist(3)"``).
    """

    def __init__(self, path: str | PathLike[str], problem: str, where: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.where = where
        location = f"{self.path}: {where}" if where else self.path
        super().__init__(f"{location}: {problem}")


class ConfigError(CrossposeError, ValueError):
    """A model, data or run option is inconsistent with the data or a checkpoint."""


class CheckpointError(CrossposeError, ValueError):
    """A checkpoint cannot be used the way it was asked to be used."""
