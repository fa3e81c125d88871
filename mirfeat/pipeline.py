"""One embedding pass, many classifier heads.

    pipe = Pipeline(["danceability-audioset-vggish-1.onnx", "mood_happy-audioset-vggish-1.onnx"])
    out = pipe("song.mp3")
    out.heads["danceability-audioset-vggish-1"].top_k(2)    # clip-level labels
    out.heads["mood_happy-audioset-vggish-1"].activations    # [patches, classes]

Per file: one decode, one signature, one embedding run; every head reads the same embeddings,
each as one batch of all the file's patches. `run_files` goes through many files with progress,
and a file that fails, whatever the reason, is reported without stopping the others.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from mirfeat.audio import AudioInput
from mirfeat.errors import display_name, failure_reason
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
    """A file `run_files` could not process: its name and one line saying why."""

    source: str
    error: str


class Pipeline:
    """An embedding model and any number of heads reading its embeddings.

    heads: head models or paths/names of their .onnx files. embedding_model: the audio model to
    run (default: the one the first head's metadata names, shared by all). Every head must read
    embeddings of that model's width. device / batch_size / threads / precision (or `options`) apply
    to every model the pipeline loads (precision "int8": the embedding model's int8 copy; heads stay
    fp32; see `load_model`).
    """

    def __init__(
        self,
        heads: Iterable[Head | str | os.PathLike],
        embedding_model: Model | str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        batch_size: int | str | None = None,
        threads: int | None = None,
        precision: str = "fp32",
        options: RunOptions | None = None,
    ):
        options = options or RunOptions(device=device, batch_size=batch_size, threads=threads, precision=precision)
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
        width = embedding_model.graph.output_width(self.embeddings_output)
        for head in self.heads:
            head_width = head.graph.input_shape[-1]
            if width and isinstance(head_width, int) and head_width > 0 and head_width != width:
                raise ValueError(
                    f"{head.path}: head {head.name} reads {head_width}-wide embeddings; "
                    f"{embedding_model.path.name}'s {self.embeddings_output} are {width} wide"
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
        self,
        paths: Iterable[str | os.PathLike] | str | os.PathLike,
        *,
        progress: bool | None = None,
        last_patch_mode: str = "discard",
    ) -> Iterator[PipelineResult | FileFailure]:
        """Yield one result per file, in order; a file that fails, for whatever reason, yields a
        `FileFailure` with its name and the reason, and the others go on. `paths` may be one path.
        progress: a tqdm bar on stderr (default: when stderr is a terminal)."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = list(paths)
        show = sys.stderr.isatty() if progress is None else progress
        for path in tqdm(paths, unit="file", disable=not show, file=sys.stderr, leave=False):
            try:
                result: PipelineResult | FileFailure = self(path, last_patch_mode=last_patch_mode)
            except Exception as exc:  # one file of a thousand must not stop the others
                result = FileFailure(display_name(path), failure_reason(path, exc))
            yield result


def _load_head(name_or_path: str | os.PathLike, options: RunOptions) -> Head:
    model = load_model(name_or_path, options=options)
    if not isinstance(model, Head):
        raise ValueError(f"{name_or_path}: not a classifier head (its algorithm is {model.metadata.algorithm})")
    return model
