"""Cutting band frames into model patches as Essentia's VectorRealToTensor does."""

from __future__ import annotations

import math

import numpy as np

PATCH_MODES = ("discard", "repeat")


def patch_count(n_frames: int, patch_size: int, hop_size: int, mode: str = "discard") -> int:
    """Patches Essentia emits for `n_frames` frames.

    Full patches start every `hop_size` frames from frame 0. In "repeat" mode one more patch holds
    the frames left after the last full patch (always, when patches overlap).
    """
    _check_mode(mode)
    hop = hop_size or patch_size
    n_full = 0 if n_frames < patch_size else (n_frames - patch_size) // hop + 1
    if mode == "repeat" and n_frames - n_full * hop > 0:
        return n_full + 1
    return n_full


def make_patches(frames: np.ndarray, patch_size: int, hop_size: int, mode: str = "discard") -> np.ndarray:
    """[n_frames, bands] -> [n_patches, patch_size, bands].

    Patch p is frames[p*hop : p*hop + patch_size]. The "repeat" patch holds the remaining frames
    followed by those same frames repeated cyclically, truncated to `patch_size`.
    """
    _check_mode(mode)
    hop = hop_size or patch_size
    n_frames, n_bands = frames.shape
    n_patches = patch_count(n_frames, patch_size, hop, mode)
    n_full = patch_count(n_frames, patch_size, hop, "discard")
    out = np.empty((n_patches, patch_size, n_bands), dtype=np.float32)
    if n_full:
        windows = np.lib.stride_tricks.sliding_window_view(frames, patch_size, axis=0)
        out[:n_full] = windows[: (n_full - 1) * hop + 1 : hop].transpose(0, 2, 1)
    if n_patches > n_full:
        rest = frames[n_full * hop :]
        out[n_full] = rest[np.arange(patch_size) % len(rest)]
    return out


def patch_starts(n_frames: int, patch_size: int, hop_size: int, mode: str = "discard") -> list[int | None]:
    """First frame of each patch `make_patches` cuts, or None for the "repeat" patch (not a slice)."""
    hop = hop_size or patch_size
    n_full = patch_count(n_frames, patch_size, hop, "discard")
    n_patches = patch_count(n_frames, patch_size, hop, mode)
    return [p * hop for p in range(n_full)] + [None] * (n_patches - n_full)


def patch_start_times(n_patches: int, hop_size: int, frame_hop: int, sample_rate: int) -> np.ndarray:
    """Start time in seconds of each patch (the centre of its first frame)."""
    return np.arange(n_patches) * hop_size * frame_hop / sample_rate


def _check_mode(mode: str) -> None:
    if mode not in PATCH_MODES:
        raise ValueError(f"lastPatchMode must be one of {PATCH_MODES}, not {mode!r}")


def essentia_padding_patches(
    n_samples: int, frame_size: int, hop_size: int, patch_size: int, patch_hop_size: int, batch_size: int, mode: str
) -> int:
    """Patches Essentia's standard-mode TensorflowPredictEffnetDiscogs adds to fill its last batch.

    It estimates the patch count from the signal length in single precision, with a frame count
    one short of the FrameCutter's (1 + ceil((N - F/2) / hop) instead of ceil(N / hop) + 1), and
    appends `padding * patch_hop_size * hop_size` zero samples to the signal. With
    lastBatchMode "same" it then drops as many rows from the end of the output, so when
    (n_frames - patch_size) % patch_hop_size == 0 it returns one row fewer than there are patches.
    """
    f32 = np.float32
    hops = f32((float(f32(n_samples)) - frame_size / 2.0) / float(f32(hop_size)))
    n_frames = 1 + math.ceil(hops)
    patch_hops = f32((f32(n_frames) - f32(patch_size)) / f32(patch_hop_size))
    n_patches = 1 + (math.ceil(patch_hops) if mode == "repeat" else math.floor(patch_hops))
    n_batches = math.ceil(f32(n_patches) / f32(batch_size))
    return n_batches * batch_size - n_patches
