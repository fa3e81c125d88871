"""Essentia-compatible facade: Essentia's algorithm names, parameter names and defaults.

Essentia's model tutorials run on mirfeat with the import line changed and `.pb` -> `.onnx`:

    from mirfeat.essentia import MonoLoader, TensorflowPredictMusiCNN
    audio = MonoLoader(sampleRate=16000, filename="audio.wav")()
    activations = TensorflowPredictMusiCNN(graphFilename="msd-musicnn-1.onnx")(audio)

One class per family of `mirfeat.families.FAMILIES` (TensorflowPredictMusiCNN, ...VGGish,
...EffnetDiscogs, ...MAEST, ...TempoCNN, ...CREPE, ...FSDSINet, TensorflowPredict2D), each a thin
layer over the model API with that family's defaults; on top, Essentia's PitchCREPE (on CREPE) and
TempoCNN (global BPM, local tempi and their probabilities from TensorflowPredictTempoCNN). Inputs
are float32 mono signals at the family's rate, as in Essentia; outputs are [rows, dims] float32
arrays, one row per patch (CREPE: per frame), except MAEST's tensor ([patches, 1, tokens, width] or
[patches, 1, 1, classes]).

Besides Essentia's parameters, the audio classes take two of mirfeat's: `device` ("cpu", "cuda"
or "auto") and the keyword-only `precision`: "fp32" (default; the parity tests hold it to
Essentia's tolerances), "int8", the quantized copy `python -m conversion quantize MODEL.onnx`
writes beside the model (faster where the CPU has int8 kernels; its accuracy against Essentia is
stated in benchmarks/README.md, not held to Essentia's tolerances), or "fp16" (for CUDA).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from mirfeat.audio import load_audio
from mirfeat.errors import AudioError, ModelError
from mirfeat.families import CREPE_FAMILY, FAMILIES, TEMPOCNN_FAMILY, Family
from mirfeat.metadata import ModelMetadata
from mirfeat.model import Head, Model, essentia_rows, resolve_model_path
from mirfeat.patches import PATCH_MODES, essentia_padding_patches, make_patches, patch_count
from mirfeat.pitch import decode_pitch
from mirfeat.runtime import RunOptions
from mirfeat.tempo import NoTempoError, aggregate, check_aggregation, local_tempi

GraphT = TypeVar("GraphT", Model, Head)

LAST_BATCH_MODES = ("discard", "zeros", "same")


class MonoLoader:
    """Decode a file to mono float32 at `sampleRate` (Essentia's MonoLoader, same resampler)."""

    def __init__(self, filename: str = "", sampleRate: float = 44100, resampleQuality: int = 1, downmix: str = "mix"):
        if downmix != "mix":
            raise ValueError("only downmix='mix' (the average of the channels) is supported")
        self.filename = filename
        self.sampleRate = int(sampleRate)
        self.resampleQuality = resampleQuality

    def __call__(self) -> np.ndarray:
        return load_audio(self.filename, self.sampleRate, resample_quality=self.resampleQuality)


def _metadata_for(path: Path, family: Family) -> ModelMetadata:
    """The JSON beside the model (labels, output names), with the wrapper's algorithm: in Essentia
    the wrapper, not the file, decides how the graph is fed."""
    json_path = path.with_suffix(".json")
    if json_path.is_file():
        return ModelMetadata.read(json_path).with_algorithm(family.algorithm)
    return ModelMetadata(path.stem, family.algorithm, sample_rate=16000, classes=[], inputs=[], outputs=[])


def _open_graph(
    graph_class: Callable[..., GraphT],
    graphFilename: str,
    family: Family,
    input: str | None,
    options: RunOptions,
    **kwargs,
) -> GraphT:
    """A facade class's graph (Model or Head): `graphFilename` resolved (a path or a bundled or
    registry name), its JSON read with the wrapper's family, `input` or the family's input name."""
    path = resolve_model_path(graphFilename)
    return graph_class(
        path,
        metadata=_metadata_for(path, family),
        family=family,
        options=options,
        input_name=input or family.input_name,
        **kwargs,
    )


def _patching(
    name: str,
    family: Family,
    graphFilename: str,
    patchSize: int | None,
    patchHopSize: int | None,
    batchSize: int | None,
    lastPatchMode: str,
    accumulate: bool,
) -> tuple[int, int, int]:
    """(patchSize, patchHopSize, batchSize) as the wrapper settles them, after Essentia's parameter
    ranges: patchSize and patchHopSize in [0, inf) (0: the default size; no overlap), batchSize in
    [-1, inf) (-1 or 0: all patches at once), lastPatchMode one of `PATCH_MODES`."""
    for parameter, value, low in (
        ("patchSize", patchSize, 0),
        ("patchHopSize", patchHopSize, 0),
        ("batchSize", batchSize, -1),
    ):
        if value is not None and value < low:
            raise ValueError(f"{name}: {parameter} must be in [{low}, inf), not {value}")
    if lastPatchMode not in PATCH_MODES:
        raise ValueError(f"{name}: lastPatchMode must be one of {PATCH_MODES}, not {lastPatchMode!r}")
    size, hop = family.patching(graphFilename, patchSize, patchHopSize)
    return size, hop, -1 if accumulate else (family.batch_size if batchSize is None else batchSize)


def _checked_output(name: str, graph: Model | Head, output: str) -> str:
    """The wrapper's `output`, refused at construction (with the graph's file) if the graph has no such tensor."""
    try:
        graph.graph.graph_name(output)  # a schema name (published ONNX) or a graph tensor name
    except KeyError as exc:
        raise ModelError(f"{graph.path}: {name}: output {exc.args[0]}") from None
    return output


def _mono(name: str, audio: np.ndarray) -> np.ndarray:
    """The wrapper's input as Essentia takes it: a non-empty mono float signal; integer PCM and
    NaN/inf samples are refused (Essentia would read them as they are and give meaningless values)."""
    audio = np.asarray(audio)
    if audio.dtype.kind != "f":
        raise AudioError(
            f"{name}: expects float samples in [-1, 1] (as MonoLoader gives), not {audio.dtype}; "
            "scale integer PCM first (e.g. int16 / 32768)"
        )
    audio = audio.astype(np.float32, copy=False)
    if audio.ndim != 1:
        raise ValueError(f"{name}: expects a mono signal, got shape {audio.shape}")
    if len(audio) == 0:
        raise ValueError(f"{name}: empty input signal")
    if not np.isfinite(audio).all():
        raise AudioError(f"{name}: the signal contains NaN or infinite samples")
    return audio


def essentia_tensor(output: np.ndarray) -> np.ndarray:
    """A graph output [B, ...] right-aligned into Essentia's 4-D tensor: [B, C] -> [B, 1, 1, C],
    [B, T, F] -> [B, 1, T, F]."""
    return output.reshape(output.shape[:1] + (1,) * (4 - output.ndim) + output.shape[1:])


class _TensorflowPredictAudio:
    """What Essentia's audio TensorflowPredict* wrappers share: frames -> patches -> graph."""

    family: ClassVar[Family]

    def __init__(
        self,
        graphFilename: str = "",
        input: str | None = None,
        output: str | None = None,
        isTrainingName: str = "",
        patchHopSize: int | None = None,
        batchSize: int | None = None,
        lastPatchMode: str = "discard",
        accumulate: bool = False,
        patchSize: int | None = None,
        lastBatchMode: str | None = None,
        normalize: bool | None = None,
        device: str = "cpu",
        *,
        precision: str = "fp32",
    ):
        name, family = type(self).__name__, self.family
        if not graphFilename:
            raise ValueError(f"{name}: graphFilename is required")
        if lastBatchMode is not None and family.last_batch_mode is None:
            raise TypeError(f"{name} has no lastBatchMode parameter")
        if normalize is not None and family.signal_transform is None:
            raise TypeError(f"{name} has no normalize parameter")
        # FSD-SINet's whole-clip normalisation (default true, as in Essentia's standard mode).
        self.normalize = normalize is not False
        self.lastBatchMode = lastBatchMode or family.last_batch_mode
        if self.lastBatchMode is not None and self.lastBatchMode not in LAST_BATCH_MODES:
            raise ValueError(f"{name}: lastBatchMode must be one of {LAST_BATCH_MODES}, not {lastBatchMode!r}")
        # isTrainingName is accepted for compatibility: conversion folds that flag to False.
        self.isTrainingName = isTrainingName
        self.patchSize, self.patchHopSize, self.batchSize = _patching(
            name, family, graphFilename, patchSize, patchHopSize, batchSize, lastPatchMode, accumulate
        )
        self.lastPatchMode = lastPatchMode
        self._model = _open_graph(
            Model,
            graphFilename,
            family,
            input,
            RunOptions(device=device, batch_size=self.batchSize, precision=precision),
            patch_size=self.patchSize,
            patch_hop_size=self.patchHopSize,
        )
        self.output = _checked_output(name, self._model, output or family.output_name)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        name, family = type(self).__name__, self.family
        signal = _mono(name, audio)
        batched = self.lastBatchMode is not None and self.batchSize > 0
        padding = 0
        if batched and self.lastBatchMode in ("zeros", "same"):
            assert family.signature is not None
            padding = essentia_padding_patches(
                len(signal),
                family.signature.frame_size,
                family.signature.hop_size,
                self.patchSize,
                self.patchHopSize,
                self.batchSize,
                self.lastPatchMode,
            )
            zeros = np.zeros(padding * self.patchHopSize * family.signature.hop_size, np.float32)
            signal = np.concatenate([signal, zeros])
        bands = family.bands(signal, transform_signal=self.normalize)
        limit = None
        if batched:
            # Essentia's inner stream (VectorRealToTensor, lastBatchMode "discard") drops an
            # incomplete last batch. A repeat-mode last patch forces a push of the batch it joins,
            # except when the full patches filled their batches exactly: that push then takes the
            # pending full batch, and the repeat patch is left behind.
            n_full = patch_count(len(bands), self.patchSize, self.patchHopSize, "discard")
            n_patches = patch_count(len(bands), self.patchSize, self.patchHopSize, self.lastPatchMode)
            pushed = (n_patches > n_full and n_full % self.batchSize != 0) or n_full == 0
            limit = n_patches if pushed else n_full // self.batchSize * self.batchSize
        raw = self._model.run_patches(
            bands,
            [self.output],
            last_patch_mode=self.lastPatchMode,
            patch_size=self.patchSize,
            patch_hop_size=self.patchHopSize,
            max_patches=limit,
        )[self.output]
        if family.tensor_output:
            if len(raw) == 0:
                raise ValueError(f"{name}: input signal is too short.")
            return essentia_tensor(raw)
        rows = essentia_rows(raw)
        if self.lastBatchMode == "same":  # Essentia erases that many output rows (one per patch for 2-D outputs)
            rows = rows[: max(len(rows) - padding, 0)]
        return rows


class _TensorflowPredictEmbeddings:
    """Essentia's TensorflowPredict2D: [T, D] embeddings in, one output row per patch of `patchSize` rows."""

    family: ClassVar[Family]

    def __init__(
        self,
        graphFilename: str = "",
        input: str | None = None,
        output: str | None = None,
        isTrainingName: str = "",
        patchSize: int | None = None,
        patchHopSize: int | None = None,
        batchSize: int | None = None,
        lastPatchMode: str = "discard",
        accumulate: bool = False,
        dimensions: int = 200,
        device: str = "cpu",
    ):
        name, family = type(self).__name__, self.family
        if not graphFilename:
            raise ValueError(f"{name}: graphFilename is required")
        self.isTrainingName = isTrainingName
        self.patchSize, self.patchHopSize, self.batchSize = _patching(
            name, family, graphFilename, patchSize, patchHopSize, batchSize, lastPatchMode, accumulate
        )
        self.lastPatchMode = lastPatchMode
        self.dimensions = dimensions  # as in Essentia's standard mode, the input's width wins
        self._head = _open_graph(
            Head, graphFilename, family, input, RunOptions(device=device, batch_size=self.batchSize)
        )
        self.output = _checked_output(name, self._head, output or family.output_name)

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        name = type(self).__name__
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError(f"{name}: expects a 2-D [T, D] array, got shape {embeddings.shape}")
        patches = make_patches(embeddings, self.patchSize, self.patchHopSize, self.lastPatchMode)
        rows = self.family.model_input(patches)
        return essentia_rows(self._head.graph.run(rows, [self.output], self.batchSize)[self.output])


class _CREPEWrapper:
    """What TensorflowPredictCREPE and PitchCREPE share: 1024-sample frames every `hopSize` ms at
    16 kHz (floor(N / hop) + 1 of them, each standardised on its own) -> activations [frames, 360].
    A frame of digital silence standardises to NaN (0 / 0, as in Essentia) and its row is NaN
    (Essentia's TensorFlow turns that NaN into an arbitrary row of 0s and 1s)."""

    family: ClassVar[Family] = CREPE_FAMILY
    default_batch_size: ClassVar[int]

    def __init__(
        self,
        graphFilename: str = "",
        input: str | None = None,
        output: str | None = None,
        hopSize: float = 10.0,
        batchSize: int | None = None,
        device: str = "cpu",
        *,
        precision: str = "fp32",
    ):
        name, family = type(self).__name__, self.family
        if not graphFilename:
            raise ValueError(f"{name}: graphFilename is required")
        if not hopSize > 0:
            raise ValueError(f"{name}: hopSize must be > 0 (milliseconds), not {hopSize!r}")
        self.hopSize = float(hopSize)
        self.batchSize = self.default_batch_size if batchSize is None else batchSize
        self._model = _open_graph(
            Model,
            graphFilename,
            family,
            input,
            RunOptions(device=device, batch_size=self.batchSize, precision=precision),
            hop_ms=self.hopSize,
        )
        self.output = _checked_output(name, self._model, output or family.output_name)

    def activations(self, audio: np.ndarray) -> np.ndarray:
        """[N] samples at 16 kHz -> [frames, 360] float32."""
        signal = _mono(type(self).__name__, audio)
        return self._model(signal, sample_rate=self._model.sample_rate, outputs=[self.output]).outputs[self.output]


class TensorflowPredictCREPE(_CREPEWrapper):
    __doc__ = "Essentia's TensorflowPredictCREPE: " + (_CREPEWrapper.__doc__ or "").split(": ", 1)[1]
    default_batch_size = CREPE_FAMILY.batch_size

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return self.activations(audio)


class PitchCREPE(_CREPEWrapper):
    """Essentia's PitchCREPE: [N] samples at 16 kHz -> (time [frames] s, frequency [frames] Hz,
    confidence [frames], activations [frames, 360]), decoded by `mirfeat.pitch.decode_pitch`.
    Frames without a pitch (NaN activations: digital silence) get frequency 0 and confidence 0.
    """

    default_batch_size = 64  # PitchCREPE's default (TensorflowPredictCREPE's is 16)

    def __call__(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        activations = self.activations(audio)
        track = decode_pitch(activations, self._model.patch_times(len(activations)))
        return track.times.astype(np.float32), track.frequency, track.confidence, activations


_WRITTEN = {"TensorflowPredictCREPE": TensorflowPredictCREPE}  # families whose facade is written out


def _facade_class(family: Family) -> type:
    base = _TensorflowPredictAudio if family.takes_audio else _TensorflowPredictEmbeddings
    if family.signature is not None:
        doc = (
            f"Essentia's {family.algorithm}: {family.signature.name} bands at {family.signature.sample_rate} Hz, "
            f"patches of {family.patch_size} frames every {family.patch_hop_size}, batchSize {family.batch_size}; "
            f"default input {family.input_name!r}, output {family.output_name!r}."
        )
    else:
        doc = f"Essentia's {family.algorithm}: [T, D] embeddings in, one output row per patch of patchSize rows."
    return type(family.algorithm, (base,), {"family": family, "__doc__": doc, "__module__": __name__})


_CLASSES = {name: _WRITTEN.get(name) or _facade_class(family) for name, family in FAMILIES.items() if family.facade}
globals().update(_CLASSES)


class TempoCNN:
    """Essentia's TempoCNN: a TempoCNN graph's tempo classes per patch, read as tempo.

    Takes a mono float32 signal at 11025 Hz; returns (globalTempo, localTempo,
    localTempoProbabilities): the global BPM (a float), the most probable BPM of each patch
    ([patches] float32, a patch every 128 frames, 5.9 s) and its probability ([patches] float32).
    aggregationMethod: "majority" (the most frequent local tempo, the first one on a tie), "mean"
    or "median" (see `mirfeat.tempo`). batchSize defaults to 64 here (16 in
    TensorflowPredictTempoCNN), as in Essentia; it does not change the results.

    Shorter than one patch (256 frames, 11.9 s; lastPatchMode "discard"), as in Essentia: "majority"
    gives 0.0 and empty local tempi; "mean" and "median" raise a ValueError.
    """

    def __init__(
        self,
        graphFilename: str = "",
        savedModel: str = "",
        input: str = "input",
        output: str = "output",
        patchHopSize: int = 128,
        lastPatchMode: str = "discard",
        batchSize: int = 64,
        aggregationMethod: str = "majority",
        device: str = "cpu",
        *,
        precision: str = "fp32",
    ):
        if savedModel:
            raise ValueError("TempoCNN: savedModel is not supported; convert the model to ONNX and pass graphFilename")
        self.aggregationMethod = check_aggregation(aggregationMethod)
        self._predict = _CLASSES[TEMPOCNN_FAMILY.algorithm](
            graphFilename=graphFilename,
            input=input,
            output=output,
            patchHopSize=patchHopSize,
            batchSize=batchSize,
            lastPatchMode=lastPatchMode,
            device=device,
            precision=precision,
        )

    def __call__(self, audio: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        probabilities = self._predict(audio)
        local_bpm, local_probabilities = local_tempi(probabilities)
        if len(local_bpm) == 0 and self.aggregationMethod == "majority":
            return 0.0, local_bpm, local_probabilities  # Essentia's value when there is no patch
        try:
            global_bpm = aggregate(local_bpm, self.aggregationMethod)
        except NoTempoError:
            raise ValueError(f"TempoCNN: trying to calculate {self.aggregationMethod} of empty array") from None
        return global_bpm, local_bpm, local_probabilities


__all__ = ["MonoLoader", "PitchCREPE", "TempoCNN", "essentia_tensor", *_CLASSES]
