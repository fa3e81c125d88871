"""One embedding pass, many classifier heads.

    pipe = Pipeline(["danceability-audioset-vggish-1.onnx", "mood_happy-audioset-vggish-1.onnx"])
    out = pipe("song.mp3")
    out.heads["danceability-audioset-vggish-1"].top_k(2)    # clip-level labels
    out.heads["mood_happy-audioset-vggish-1"].activations    # [patches, classes]

Per file: one decode, one signature, one embedding run; every head reads the same embeddings,
each as one batch of all the file's patches. `run_files` goes through many files with progress,
and a file that fails is reported without stopping the others.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mirfeat.audio import AudioError, AudioInput
from mirfeat.model import Head, Model, load_model, same_model
from mirfeat.results import Result
from mirfeat.runtime import RunOptions


@dataclass
class PipelineResult:
    """Embeddings [patches, D] and their patch times, plus one `Result` per head (by head name)."""

    embeddings: np.ndarray
    patch_times: np.ndarray
    heads: dict[str, Result] = field(default_factory=dict)
    source: str = ""
    duration: float = 0.0

    def means(self) -> dict[str, dict[str, float]]:
        """Clip-level activations per head: {head: {label: mean over patches}}."""
        return {
            name: dict(zip(result.labels, map(float, result.mean()), strict=False))
            for name, result in self.heads.items()
        }


@dataclass
class FileFailure:
    source: str
    error: str


class Pipeline:
    """An embedding model and any number of heads reading its embeddings.

    heads: head models or paths/names of their .onnx files. embedding_model: the audio model to
    run (default: the one the first head's metadata names, shared by all). Every head must read
    embeddings of that model's width. device / batch_size / threads (or `options`) apply to every
    model the pipeline loads.
    """

    def __init__(
        self,
        heads: Iterable[Head | str | os.PathLike],
        embedding_model: Model | str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int | None = None,
        options: RunOptions | None = None,
    ):
        options = options or RunOptions(device=device, batch_size=batch_size, threads=threads)
        self.heads = [h if isinstance(h, Head) else _load_head(h, options) for h in heads]
        if not self.heads:
            raise ValueError("a pipeline needs at least one head")
        if embedding_model is None:
            embedding_model = self.heads[0].embedding_model
        elif not isinstance(embedding_model, Model):
            loaded = load_model(embedding_model, options=options)
            if not isinstance(loaded, Model):
                raise ValueError(f"{embedding_model}: an embedding model must take audio, not embeddings")
            embedding_model = loaded
        self.embedding_model: Model = embedding_model
        self.embeddings_output = embedding_model.metadata.output_for("embeddings") or embedding_model.output_names[0]
        for head in self.heads:
            expected = head.embedding_model_name
            if expected and not any(
                same_model(expected, name) for name in (embedding_model.path.stem, embedding_model.metadata.name)
            ):
                raise ValueError(
                    f"head {head.name} reads {expected} embeddings, not {embedding_model.path.stem}'s; "
                    "run it in a pipeline of its own"
                )
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names):
            raise ValueError(f"head names must be unique: {names}")

    def __call__(
        self, audio: AudioInput, *, sample_rate: int | None = None, last_patch_mode: str = "discard"
    ) -> PipelineResult:
        run = self.embedding_model(
            audio, sample_rate=sample_rate, last_patch_mode=last_patch_mode, outputs=[self.embeddings_output]
        )
        embeddings = run.outputs[self.embeddings_output]
        return PipelineResult(
            embeddings=embeddings,
            patch_times=run.patch_times,
            heads={h.name: h.result(embeddings, run.patch_times, run.source, run.duration) for h in self.heads},
            source=run.source,
            duration=run.duration,
        )

    def run_files(
        self, paths: Iterable[str | os.PathLike], *, progress: bool = True, last_patch_mode: str = "discard"
    ) -> Iterator[PipelineResult | FileFailure]:
        """Yield one result per file, in order; unreadable files yield a `FileFailure`."""
        paths = list(paths)
        started = time.perf_counter()
        for index, path in enumerate(paths, 1):
            try:
                yield self(path, last_patch_mode=last_patch_mode)
            except (AudioError, OSError) as exc:
                yield FileFailure(str(path), str(exc))
            if progress:
                elapsed = time.perf_counter() - started
                print(f"\r[{index}/{len(paths)}] {elapsed:.1f} s  {Path(path).name[:40]:<40}", end="", file=sys.stderr)
        if progress and paths:
            print(file=sys.stderr)


def _load_head(name_or_path: str | os.PathLike, options: RunOptions) -> Head:
    model = load_model(name_or_path, options=options)
    if not isinstance(model, Head):
        raise ValueError(f"{name_or_path}: not a classifier head (its algorithm is {model.metadata.algorithm})")
    return model
