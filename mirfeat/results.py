"""What a model run returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mirfeat.families import CREPE_FAMILY, TEMPOCNN_FAMILY
from mirfeat.pitch import PitchTrack, decode_pitch
from mirfeat.tempo import NoTempoError, TempoEstimate, estimate_tempo


@dataclass
class Result:
    """What one model run gives for one input.

    outputs: every requested graph output, keyed by its schema name. One row per patch
        ([patches, dims]) for most families (CREPE: one per frame, [frames, 360]); MAEST's keep the
        graph's per-patch tensor ([patches, tokens, width] for a transformer block, [patches,
        classes] for the classifier).
    activations / embeddings: the outputs whose metadata purpose is predictions / embeddings.
    patch_times: [patches] start of each patch in seconds (CREPE: [frames], the centre of each frame).
    duration: seconds of audio at the model's rate.
    algorithm: the Essentia wrapper of the model that gave it (its family), e.g.
        "TensorflowPredictTempoCNN"; "" where unknown.
    """

    outputs: dict[str, np.ndarray]
    labels: list[str]
    patch_times: np.ndarray
    predictions_name: str | None = None
    embeddings_name: str | None = None
    source: str = ""
    duration: float = 0.0
    extras: dict = field(default_factory=dict)
    algorithm: str = ""

    @property
    def activations(self) -> np.ndarray | None:
        return self.outputs.get(self.predictions_name) if self.predictions_name else None

    @property
    def embeddings(self) -> np.ndarray | None:
        return self.outputs.get(self.embeddings_name) if self.embeddings_name else None

    def mean(self) -> np.ndarray:
        """Clip-level activations: the mean over patches, [classes] (NaN when there are no patches)."""
        activations = self._require_activations()
        if len(activations) == 0:
            return np.full(activations.shape[1:], np.nan, dtype=np.float32)
        return activations.mean(axis=0)

    def top_k(self, k: int = 5) -> list[tuple[str, float]]:
        """The k labels with the highest clip-level activation, best first (k >= 1)."""
        if k < 1:
            raise ValueError(f"top_k needs k >= 1, not {k}")
        clip = self.mean()
        if np.isnan(clip).all():
            return []
        order = np.argsort(-clip, kind="stable")[:k]
        return [(self.labels[i] if i < len(self.labels) else str(i), float(clip[i])) for i in order]

    def pitch(self) -> PitchTrack:
        """A CREPE run's pitch per frame (Essentia's PitchCREPE decoding of the [frames, 360]
        activations): times in s, frequency in Hz, confidence in [0, 1]."""
        if self.algorithm and self.algorithm != CREPE_FAMILY.algorithm:
            raise ValueError(f"pitch() needs a CREPE model's result, not a {self.algorithm} one")
        return decode_pitch(self._require_activations(), self.patch_times)

    def tempo(self, aggregation: str = "majority") -> TempoEstimate:
        """A TempoCNN model's run as tempo: global BPM and one local tempo per patch (see
        `mirfeat.tempo`). aggregation: "majority" (default, Essentia's), "mean" or "median".
        A `mirfeat.tempo.NoTempoError` (a ValueError) when the input is shorter than one patch."""
        if self.algorithm and self.algorithm != TEMPOCNN_FAMILY.algorithm:
            raise ValueError(f"tempo() needs a TempoCNN model's result, not a {self.algorithm} one")
        activations = self._require_activations()
        try:
            return estimate_tempo(activations, self.patch_times, aggregation)
        except NoTempoError:
            name = self.source or "the input"
            raise NoTempoError(
                f"{name}: shorter than one TempoCNN patch ({self.duration:.2f} s); "
                "no tempo (try last_patch_mode='repeat')"
            ) from None

    def _require_activations(self) -> np.ndarray:
        if self.activations is None:
            raise ValueError("this model run has no predictions output")
        return self.activations
