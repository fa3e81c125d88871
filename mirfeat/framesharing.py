"""Run a model's frame-local layers once per spectrogram instead of once per overlapping patch.

MusiCNN's patches overlap by half (hop 93 of 187 frames) and its timbral convolutions, ~75% of
its compute, see only 3 frames either side. The conversion step splits such graphs in two
(`conversion.optimize.split_frame_sharing`): a per-frame part, runnable on any number of frames,
and the rest, which takes the patches plus those per-frame features. Here the per-frame part
runs over the whole spectrogram (in chunks); each patch takes its slice of that, except the
`context` frames at each of its edges, which see the patch's own zero padding and are computed
from the patch's edge frames. The result is the same as running the whole graph per patch, up
to float rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mirfeat.runtime import Session


def part_files(model_path: Path, metadata: dict) -> tuple[Path, Path] | None:
    """The frame-sharing parts the conversion step wrote beside `model_path` (the per-frame graph,
    the patch graph), as its raw metadata's `mirfeat.frame_sharing` names them; None if none."""
    spec = (metadata.get("mirfeat") or {}).get("frame_sharing") or {}
    if "frames_model" not in spec or "patch_model" not in spec:
        return None
    return model_path.parent / spec["frames_model"], model_path.parent / spec["patch_model"]


_CHUNK_FRAMES = 1024  # frames per run of the per-frame graph: its activations (~50 kB a frame) bound memory


class FrameSharing:
    def __init__(self, frames: Session, rest: Session, blocks: list[str], context: int, input_name: str):
        self.frames, self.rest, self.blocks, self.context = frames, rest, blocks, context
        self.frames_input = frames.resolve_input(input_name)
        self.rest_input = rest.resolve_input(input_name)
        self.frames_outputs = [frames.resolve_output(b) for b in blocks]
        self.rest_blocks = [rest.resolve_input(b) for b in blocks]
        self.channels = [frames.output_shapes[name][1] for name in self.frames_outputs]

    def _per_frame(self, bands: np.ndarray) -> list[np.ndarray]:
        """Per-frame features of the whole spectrogram [n_frames, bands] -> [C, n_frames] per block."""
        n, c = len(bands), self.context
        parts: list[list[np.ndarray]] = [[] for _ in self.blocks]
        for start in range(0, n, _CHUNK_FRAMES):
            stop = min(n, start + _CHUNK_FRAMES)
            lo, hi = max(0, start - c), min(n, stop + c)
            outputs = self.frames.run_once(self.frames_outputs, {self.frames_input: bands[None, lo:hi]})
            for part, out in zip(parts, outputs, strict=True):
                part.append(out[0, :, start - lo : stop - lo, 0])
        return [np.concatenate(p, axis=1) for p in parts]

    def _own(self, windows: np.ndarray) -> list[np.ndarray]:
        """Block features of windows run on their own [k, frames, bands] -> [k, C, frames] per block."""
        outputs = self.frames.run_once(self.frames_outputs, {self.frames_input: np.ascontiguousarray(windows)})
        return [out[..., 0] for out in outputs]

    def feeds(self, bands: np.ndarray, patches: np.ndarray, starts: list[int | None]) -> dict[str, np.ndarray]:
        """The patch graph's inputs for `patches` [P, T, bands]: the patches and, per block, the
        per-frame features [P, C, T, 1] they would compute themselves. `starts[p]` is patch p's first
        frame in `bands`, or None for a patch that is not a slice of them (the repeat-mode last patch)."""
        size = patches.shape[1]
        c = self.context
        contiguous = [p for p, s in enumerate(starts) if s is not None]
        whole = self._per_frame(bands) if contiguous else []
        # Edge windows: the first and last 2*context frames of every contiguous patch, in one run.
        edge_windows = np.concatenate([patches[contiguous, : 2 * c], patches[contiguous, size - 2 * c :]])
        edges = self._own(edge_windows) if contiguous else []
        edge_index = {p: i for i, p in enumerate(contiguous)}
        loose = [p for p, s in enumerate(starts) if s is None]
        own = dict(zip(loose, zip(*self._own(patches[loose]), strict=True), strict=True)) if loose else {}
        feeds = {self.rest_input: patches}
        for b, name in enumerate(self.rest_blocks):
            block = np.empty((len(patches), self.channels[b], size, 1), np.float32)
            for p, start in enumerate(starts):
                if start is None:
                    block[p, :, :, 0] = own[p][b]
                    continue
                i = edge_index[p]
                block[p, :, :, 0] = whole[b][:, start : start + size]
                block[p, :, :c, 0] = edges[b][i, :, :c]
                block[p, :, size - c :, 0] = edges[b][len(contiguous) + i, :, c:]
            feeds[name] = block
        return feeds

    def run(
        self,
        bands: np.ndarray,
        patches: np.ndarray,
        starts: list[int | None],
        outputs: list[str],
        batch_size: int,
    ) -> dict[str, np.ndarray]:
        """Outputs for `patches` by graph output name (see `feeds`), in batches of `batch_size`."""
        feeds = self.feeds(bands, patches, starts)
        graph_outputs = [self.rest.resolve_output(o) for o in outputs]
        return self.rest.run_batches(
            len(patches), lambda a, b: {k: v[a:b] for k, v in feeds.items()}, graph_outputs, batch_size
        )
