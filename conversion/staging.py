"""Files a conversion step writes, kept under temporary names until every check has passed: a
failed step leaves no unchecked file behind, and files of an earlier run as they were."""

from __future__ import annotations

import os
from pathlib import Path


class StagedFiles:
    """Files written under temporary names beside their final ones (same folder: an atomic rename),
    renamed into place together, in the order they were added, or discarded. As a context manager:
    committed when the block ends, discarded when it raises."""

    def __init__(self) -> None:
        self._temporaries: dict[Path, Path] = {}  # final path -> temporary path

    def add(self, path: Path) -> Path:
        """The temporary name to write `path` under."""
        self._temporaries[path] = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
        return self._temporaries[path]

    def temporary(self, path: Path) -> Path:
        return self._temporaries[path]

    def drop(self, path: Path) -> None:
        """Forget `path`, removing what was written under its temporary name."""
        self._temporaries.pop(path).unlink(missing_ok=True)

    def discard(self) -> None:
        for path in list(self._temporaries):
            self.drop(path)

    def commit(self) -> None:
        for path, temporary in self._temporaries.items():
            os.replace(temporary, path)
        self._temporaries.clear()

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()
