"""mirfeat's exceptions: each names the file (or input) and, for models, the field at fault.

    MirfeatError            anything mirfeat refuses, with a message meant for the user
    ├── AudioError          an input that cannot be read as audio (also a ValueError)
    ├── ModelError          a model file or its metadata that cannot be used (also a ValueError)
    │   └── ModelFetchError a model asked for by name that cannot be downloaded, verified or converted
    └── DeviceError         a device onnxruntime cannot run on here: device="cuda" without
                            onnxruntime-gpu's CUDA provider (also a RuntimeError)

The CLI prints `error: MESSAGE` for these; a batch run records them per file and goes on.
"""

from __future__ import annotations

import os


class MirfeatError(Exception):
    """Base of mirfeat's errors."""


class AudioError(MirfeatError, ValueError):
    """The input cannot be read as audio; the message names the file."""


class ModelError(MirfeatError, ValueError):
    """A model file or its metadata cannot be used; the message names the file and the field."""


class DeviceError(MirfeatError, RuntimeError):
    """The device asked for is not available to onnxruntime here; the message says what to install."""


class ModelFetchError(ModelError):
    """A registry model cannot be downloaded, verified or converted (`mirfeat.cache`); the message
    names the model and the URL or file."""


def display_name(path: str | os.PathLike) -> str:
    """A path as text that any terminal encoding prints: undecodable bytes of a file name become
    backslash escapes instead of an encoding error."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def printable(text: str) -> str:
    """Text that may hold an undecodable file name (surrogate escapes), as `display_name` shows it."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def failure_reason(path: str | os.PathLike, exc: BaseException) -> str:
    """One line for a file that failed: mirfeat's own messages name the file already; anything
    else gets the file's name and the exception's type."""
    if isinstance(exc, MirfeatError):
        return printable(str(exc))
    return f"{display_name(path)}: {type(exc).__name__}: {printable(str(exc))}"
