"""Essentia-compatible facade: Essentia's algorithm names, parameter names and defaults.

Essentia's model tutorials run on mirfeat with the import line changed and `.pb` -> `.onnx`:

    from mirfeat.essentia import MonoLoader, TensorflowPredictMusiCNN
    audio = MonoLoader(sampleRate=16000, filename="audio.wav")()
    activations = TensorflowPredictMusiCNN(graphFilename="msd-musicnn-1.onnx")(audio)

Inputs are float32 mono signals at the model's rate (16 kHz), as in Essentia; outputs are
[rows, dims] float32 arrays, one row per patch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mirfeat.audio import load_audio
from mirfeat.metadata import ModelMetadata
from mirfeat.model import Head, Model, resolve_model_path
from mirfeat.patches import make_patches
from mirfeat.signatures import MUSICNN, VGGISH, Signature


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


def _metadata_or_default(path: Path, algorithm: str) -> ModelMetadata:
    """The JSON beside the model, with the wrapper's algorithm: the wrapper decides the signature."""
    json_path = path.with_suffix(".json")
    if json_path.is_file():
        metadata = ModelMetadata.read(json_path)
        metadata.algorithm = algorithm
        return metadata
    return ModelMetadata(name=path.stem, algorithm=algorithm, sample_rate=16000, classes=[], inputs=[], outputs=[])


class _TensorflowPredictPatches:
    """What the audio TensorflowPredict* wrappers share: frames -> patches -> graph."""

    _signature: Signature
    _algorithm: str

    def __init__(
        self,
        graphFilename: str = "",
        input: str = "model/Placeholder",
        output: str = "model/Sigmoid",
        isTrainingName: str = "",
        patchHopSize: int | None = None,
        batchSize: int = 64,
        lastPatchMode: str = "discard",
        accumulate: bool = False,
        patchSize: int | None = None,
        device: str = "cpu",
    ):
        if not graphFilename:
            raise ValueError(f"{type(self).__name__}: graphFilename is required")
        path = resolve_model_path(graphFilename)
        # isTrainingName is accepted for compatibility: conversion folds that flag to False.
        self.isTrainingName = isTrainingName
        metadata = _metadata_or_default(path, self._algorithm)
        self._model = Model(path, device=device, batch_size=-1 if accumulate else batchSize, metadata=metadata)
        self._model.input_name = self._model.resolve_input(input)
        self.output = output
        self.patchSize = patchSize or self._signature.patch_size
        self.patchHopSize = self._signature.patch_hop_size if patchHopSize is None else patchHopSize
        self.lastPatchMode = lastPatchMode

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"{type(self).__name__}: expects a mono signal, got shape {audio.shape}")
        if len(audio) == 0:
            raise ValueError(f"{type(self).__name__}: empty input signal")
        bands = self._signature.compute(audio)
        values, _ = self._model.predict_bands(
            bands, self.lastPatchMode, [self.output], self.patchSize, self.patchHopSize
        )
        return values[self.output]


class TensorflowPredictMusiCNN(_TensorflowPredictPatches):
    """MusiCNN-signature models (also the musicnn-based classifiers): 187-frame patches, hop 93."""

    _signature = MUSICNN
    _algorithm = "TensorflowPredictMusiCNN"


class TensorflowPredictVGGish(_TensorflowPredictPatches):
    """VGGish-signature models (audioset-vggish and its legacy classifiers): 96-frame patches, hop 93."""

    _signature = VGGISH
    _algorithm = "TensorflowPredictVGGish"


class TensorflowPredict2D:
    """Classifier heads on embeddings: [T, D] in, one output row per patch of `patchSize` rows."""

    def __init__(
        self,
        graphFilename: str = "",
        input: str = "model/Placeholder",
        output: str = "model/Sigmoid",
        isTrainingName: str = "",
        patchSize: int = 1,
        patchHopSize: int = 1,
        batchSize: int = 64,
        lastPatchMode: str = "discard",
        accumulate: bool = False,
        dimensions: int = 200,
        device: str = "cpu",
    ):
        if not graphFilename:
            raise ValueError("TensorflowPredict2D: graphFilename is required")
        path = resolve_model_path(graphFilename)
        self.isTrainingName = isTrainingName
        metadata = _metadata_or_default(path, "TensorflowPredict2D")
        self._head = Head(path, device=device, batch_size=-1 if accumulate else batchSize, metadata=metadata)
        self._head.input_name = self._head.resolve_input(input)
        self.output = output
        self.patchSize, self.patchHopSize, self.lastPatchMode = patchSize, patchHopSize, lastPatchMode
        self.dimensions = dimensions  # as in Essentia's standard mode, the input's width wins

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError(f"TensorflowPredict2D: expects a 2-D [T, D] array, got shape {embeddings.shape}")
        if self.patchSize == 1:
            rows = embeddings  # [T, D]: one model input per embedding row
        else:
            rows = make_patches(embeddings, self.patchSize, self.patchHopSize, self.lastPatchMode)
        return self._head.run_rows(rows, [self.output])[self.output]
