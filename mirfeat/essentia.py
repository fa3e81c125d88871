"""Essentia-compatible facade: Essentia's algorithm names, parameter names and defaults.

Essentia's model tutorials run on mirfeat with the import line changed and `.pb` -> `.onnx`:

    from mirfeat.essentia import MonoLoader, TensorflowPredictMusiCNN
    audio = MonoLoader(sampleRate=16000, filename="audio.wav")()
    activations = TensorflowPredictMusiCNN(graphFilename="msd-musicnn-1.onnx")(audio)

Inputs are float32 mono signals at the model's rate (16 kHz), as in Essentia; outputs are
[patches, dims] float32 arrays, one row per patch.
"""

from __future__ import annotations

import numpy as np

from mirfeat.audio import load_audio
from mirfeat.metadata import ModelMetadata
from mirfeat.model import Model, resolve_model_path
from mirfeat.patches import make_patches
from mirfeat.signatures import MUSICNN, Signature


class MonoLoader:
    """Decode a file to mono float32 at `sampleRate` (Essentia's MonoLoader; soxr resampling)."""

    def __init__(self, filename: str = "", sampleRate: float = 44100, resampleQuality: int = 1, downmix: str = "mix"):
        if downmix != "mix":
            raise ValueError("only downmix='mix' (the average of the channels) is supported")
        self.filename = filename
        self.sampleRate = int(sampleRate)
        self.resampleQuality = resampleQuality

    def __call__(self) -> np.ndarray:
        return load_audio(self.filename, self.sampleRate, resample_quality=self.resampleQuality)


class _TensorflowPredictPatches:
    """What every patch-based TensorflowPredict* wrapper shares: frames -> patches -> graph."""

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
        self._model.input_name = self._model.session.resolve_input(input)
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
        patches = make_patches(bands, self.patchSize, self.patchHopSize, self.lastPatchMode)
        return self._model.predict_patches(patches, [self.output])[self.output]


class TensorflowPredictMusiCNN(_TensorflowPredictPatches):
    """MusiCNN-signature models (also the musicnn-based classifiers): 187-frame patches, hop 93."""

    _signature = MUSICNN
    _algorithm = "TensorflowPredictMusiCNN"


def _metadata_or_default(path, algorithm: str) -> ModelMetadata:
    json_path = path.with_suffix(".json")
    if json_path.is_file():
        metadata = ModelMetadata.read(json_path)
        metadata.algorithm = algorithm  # the wrapper decides the signature, as in Essentia
        return metadata
    return ModelMetadata(name=path.stem, algorithm=algorithm, sample_rate=16000, classes=[], inputs=[], outputs=[])
