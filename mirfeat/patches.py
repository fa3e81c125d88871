"""Cutting band frames into model patches as Essentia's VectorRealToTensor does."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PatchBatch:
    """Consecutive patches cut from a window of the bands, for one graph run.

    bands: [frames, n_bands], the frames these patches span. patches: [k, patch_size, n_bands].
    starts: each patch's first frame within `bands`, or None for the repeat-mode last patch.
    """

    bands: np.ndarray
    patches: np.ndarray
    starts: list[int | None]


def patch_batches(
    band_chunks: Iterable[np.ndarray],
    patch_size: int,
    hop_size: int,
    mode: str = "discard",
    batch_size: int = 64,
    max_patches: int | None = None,
) -> Iterator[PatchBatch]:
    """The patches `make_patches` cuts, in batches of `batch_size` (<= 0: all in one), from bands
    that arrive in chunks. Only the frames the next batch needs are kept, so memory does not grow
    with the signal's length. `max_patches` stops after that many patches."""
    _check_mode(mode)
    hop = hop_size or patch_size
    limit = math.inf if max_patches is None else max_patches
    buffer: np.ndarray | None = None
    base = 0  # frame index of buffer[0]
    done = 0  # patches yielded
    for chunk in band_chunks:
        buffer = chunk if buffer is None else np.concatenate([buffer, chunk])
        while batch_size > 0 and done < limit:
            count = int(min(batch_size, limit - done))
            need = (done + count - 1) * hop + patch_size - base  # frames of buffer this batch spans
            if len(buffer) < need:
                break
            yield _full_batch(buffer, done * hop - base, count, patch_size, hop)
            done += count
            buffer, base = buffer[done * hop - base :], done * hop
    if buffer is None:
        return
    n_frames = base + len(buffer)
    n_full = min(patch_count(n_frames, patch_size, hop, "discard"), limit)
    while done < n_full:
        count = int(n_full - done if batch_size <= 0 else min(batch_size, n_full - done))
        last = done + count == n_full and patch_count(n_frames, patch_size, hop, mode) > n_full and n_full < limit
        batch = _full_batch(buffer, done * hop - base, count, patch_size, hop)
        if last and (batch_size <= 0 or count < batch_size):
            # the repeat patch joins the last batch when there is room in it
            yield _with_repeat_patch(batch, buffer[(n_full * hop) - base :], patch_size)
            return
        yield batch
        done += count
    if patch_count(n_frames, patch_size, hop, mode) > done and done < limit:
        rest = buffer[done * hop - base :]
        yield PatchBatch(rest, rest[np.arange(patch_size) % len(rest)][None], [None])


def _full_batch(buffer: np.ndarray, offset: int, count: int, patch_size: int, hop: int) -> PatchBatch:
    window = buffer[offset : offset + (count - 1) * hop + patch_size]
    patches = np.lib.stride_tricks.sliding_window_view(window, patch_size, axis=0)[::hop].transpose(0, 2, 1)
    return PatchBatch(window, np.ascontiguousarray(patches, dtype=np.float32), [p * hop for p in range(count)])


def _with_repeat_patch(batch: PatchBatch, rest: np.ndarray, patch_size: int) -> PatchBatch:
    repeat = rest[np.arange(patch_size) % len(rest)][None]
    return PatchBatch(batch.bands, np.concatenate([batch.patches, repeat]), [*batch.starts, None])
