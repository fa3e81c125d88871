"""mirfeat's exceptions: each names the file (or input) and, for models, the field at fault.

    MirfeatError            anything mirfeat refuses, with a message meant for the user
    ├── AudioError          an input that cannot be read as audio (also a ValueError)
    └── ModelError          a model file or its metadata that cannot be used (also a ValueError)

The CLI prints `error: MESSAGE` for these; a batch run records them per file and goes on.
"""

from __future__ import annotations


class MirfeatError(Exception):
    """Base of mirfeat's errors."""


class AudioError(MirfeatError, ValueError):
    """The input cannot be read as audio; the message names the file."""


class ModelError(MirfeatError, ValueError):
    """A model file or its metadata cannot be used; the message names the file and the field."""
