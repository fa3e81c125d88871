"""Tempo from TempoCNN's per-patch tempo classes, as Essentia's `TempoCNN` algorithm reads them.

A TempoCNN graph gives, for each patch of 256 frames (11.9 s at 11025 Hz, one every 128 frames,
5.9 s), a softmax over 256 tempo classes: class i is 30 + i BPM (30..285). The local tempo of a
patch is its most probable class (the first one on a tie); the global tempo aggregates the local
tempi: "majority" (the most frequent local tempo; on a tie, the one that occurs first), "mean" or
"median" (the mean of the two middle values for an even count), in single precision as Essentia
computes them. `Result.tempo()` uses `estimate_tempo`; `mirfeat.essentia.TempoCNN` its two parts,
`local_tempi` and `aggregate` (it keeps Essentia's 0.0 for majority on no patches).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

BPM_OFFSET = 30  # class i of the softmax is 30 + i BPM
N_TEMPO_CLASSES = 256
AGGREGATIONS = ("majority", "mean", "median")


class NoTempoError(ValueError):
    """No patch to estimate a tempo from (a signal shorter than one patch)."""


@dataclass(frozen=True)
class TempoEstimate:
    """The tempo of one input.

    bpm: global tempo in BPM, the local tempi aggregated by `aggregation`.
    local_bpm: [patches] float32, the most probable tempo of each patch in BPM (integers 30..285).
    local_probabilities: [patches] float32, the softmax value of that tempo (a confidence).
    patch_times: [patches] float64, start of each patch in seconds (each covers 11.9 s).
    aggregation: "majority", "mean" or "median".
    """

    bpm: float
    local_bpm: np.ndarray
    local_probabilities: np.ndarray
    patch_times: np.ndarray
    aggregation: str

    def local(self) -> list[tuple[float, float, float]]:
        """(patch start in s, BPM, probability) for each patch."""
        return [
            (float(t), float(b), float(p))
            for t, b, p in zip(self.patch_times, self.local_bpm, self.local_probabilities, strict=True)
        ]


def check_aggregation(method: str) -> str:
    """`method` lower-cased (Essentia lower-cases aggregationMethod); a ValueError if unknown."""
    lowered = method.lower()
    if lowered not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {method!r}")
    return lowered


def local_tempi(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[patches, 256] tempo-class probabilities -> (local BPM [patches], their probability
    [patches]), both float32."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim != 2:
        raise ValueError(f"tempo probabilities must be [patches, classes], got shape {probabilities.shape}")
    index = np.argmax(probabilities, axis=1) if len(probabilities) else np.zeros(0, np.intp)
    bpm = (index + BPM_OFFSET).astype(np.float32)
    return bpm, probabilities[np.arange(len(index)), index]


def aggregate(local_bpm: np.ndarray, method: str = "majority") -> float:
    """The global tempo of local tempi [patches] (BPM); a `NoTempoError` when there are none."""
    method = check_aggregation(method)
    bpm = np.asarray(local_bpm, dtype=np.float32)
    if len(bpm) == 0:
        raise NoTempoError("no patch to estimate a tempo from: the signal is shorter than one patch")
    if method == "mean":
        # Integer BPMs: the float32 sum is exact, and one float32 division rounds as Essentia's.
        return float(np.float32(bpm.sum(dtype=np.float64)) / np.float32(len(bpm)))
    if method == "median":
        ordered = np.sort(bpm)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return float(ordered[middle])
        return float((ordered[middle - 1] + ordered[middle]) / np.float32(2))
    values, first, counts = np.unique(bpm, return_index=True, return_counts=True)
    winners = np.flatnonzero(counts == counts.max())
    winner = float(values[winners[np.argmin(first[winners])]])
    if len(winners) > 1:  # Essentia warns too
        log.info("majority vote tied between %s BPM; %g comes first", values[winners].tolist(), winner)
    return winner


def estimate_tempo(probabilities: np.ndarray, patch_times: np.ndarray, aggregation: str = "majority") -> TempoEstimate:
    """A `TempoEstimate` from per-patch tempo-class probabilities [patches, 256] and the patches'
    start times [patches] (s). A `NoTempoError` when there is no patch."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 2 and len(probabilities) == 0:  # no patch: the width is unknown
        probabilities = np.zeros((0, N_TEMPO_CLASSES), np.float32)
    if probabilities.ndim != 2 or probabilities.shape[1] != N_TEMPO_CLASSES:
        raise ValueError(
            f"expected TempoCNN's tempo classes [patches, {N_TEMPO_CLASSES}], got shape {probabilities.shape}"
        )
    local_bpm, local_probabilities = local_tempi(probabilities)
    return TempoEstimate(
        bpm=aggregate(local_bpm, aggregation),
        local_bpm=local_bpm,
        local_probabilities=local_probabilities,
        patch_times=np.asarray(patch_times, dtype=np.float64),
        aggregation=check_aggregation(aggregation),
    )
