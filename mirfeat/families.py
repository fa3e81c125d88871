"""One table of Essentia's model families: what each `TensorflowPredict*` wrapper does around its graph.

A `Family` holds every fact that tells one wrapper from another: the input signature (frames ->
bands), the patch size and hop with any override rule, the transforms and the layout the graph is
fed, Essentia's batch size and last-batch rule, the default tensor names, and whether the output
is one row per patch or a tensor. `load_model`, the Essentia facade (`mirfeat.essentia`),
conversion's detection of a graph's family and the tests all read `FAMILIES`; a new family is one
entry here (plus its signature in `mirfeat.signatures`, if new).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from mirfeat.errors import ModelError
from mirfeat.signatures import CREPE, FSDSINET, MUSICNN, TEMPOCNN, VGGISH, FrameSignature, Frontend

# How patches [B, T, F] are laid out for the graph, as Essentia's wrappers feed them:
# "squeezed" [B, T, F] (TensorflowPredict's squeeze drops the channel axis; [B, D] for one-row
# patches of embeddings), "bands_time_1" [B, F, T, 1] (TempoCNN's transpose [0, 3, 2, 1]),
# "time_bands_1" [B, T, F, 1] (FSD-SINet's transpose [0, 2, 3, 1]).
LAYOUTS = ("squeezed", "bands_time_1", "time_bands_1")

# MAEST's bands are standardised with the statistics of its training data (Essentia's
# TensorflowPredictMAEST: shift by -mean, then scale by 1 / (2 std), in single precision).
MAEST_MEAN = np.float32(2.06755686098554)
MAEST_SCALE = np.float32(1.0 / (2.0 * np.float32(1.268292820667291)))


def maest_normalise(bands: np.ndarray) -> np.ndarray:
    """[n_frames, 96] MusiCNN bands -> MAEST's input scale: (x - mean) / (2 std), float32."""
    return (bands - MAEST_MEAN) * MAEST_SCALE


def standardise_patches(patches: np.ndarray) -> np.ndarray:
    """Each patch [T, F] of [B, T, F] to zero mean and unit population std (std 1 for a constant
    patch), as Essentia's TensorNormalize(scaler="standard", axis=0) does for TempoCNN."""
    flat = patches.reshape(len(patches), int(np.prod(patches.shape[1:]))).astype(np.float64)
    mean = flat.mean(axis=1, keepdims=True)
    std = flat.std(axis=1, keepdims=True)
    std[std == 0] = 1.0
    return ((flat - mean) / std).astype(np.float32).reshape(patches.shape)


# The headroom of FSD-SINet's clip normalisation (Essentia's TensorflowPredictFSDSINet, as in the
# models' training code).
FSDSINET_HEADROOM = np.float32(0.005)


def fsdsinet_normalise(signal: np.ndarray) -> np.ndarray:
    """A whole clip [N] to zero mean and peak max|x| / (max|x| + 0.005), in single precision as
    Essentia's standard-mode TensorflowPredictFSDSINet does it (normalize=true): the mean is a
    float32 running sum divided by N, a clip that is zero after the mean is taken out is left so."""
    signal = np.asarray(signal, np.float32)
    if len(signal) == 0:
        return signal
    # np.cumsum adds in order in float32, as Essentia's sum() does; np.sum would add pairwise.
    mean = np.float32(np.cumsum(signal, dtype=np.float32)[-1] / np.float32(len(signal)))
    centred = signal - mean
    peak = np.float32(np.abs(centred).max())
    if peak == 0:
        return centred
    return centred / np.float32(peak + FSDSINET_HEADROOM)


# (file-name marker, patch size, patch hop): Essentia's TensorflowPredictMAEST picks these from
# graphFilename, overriding even values the user set; patch sizes fit its 16-wide, stride-10
# patch embedding, hops jump exactly 20, 10 or 5 s (the defaults, 1876 / 1875, are the 30 s model's).
MAEST_PATCHES = (("discogs-maest-20s-", 1256, 1250), ("discogs-maest-10s-", 626, 625), ("discogs-maest-5s-", 316, 313))


@dataclass(frozen=True)
class Family:
    """What one Essentia `TensorflowPredict*` wrapper does around its graph.

    signature: frames -> bands of the audio input (CREPE's: standardised raw frames, see
        `mirfeat.signatures.FrameSignature`); None for heads, which read embeddings.
    patch_size, patch_hop_size: frames (or embedding rows) per patch and between patch starts.
    patch_overrides: (file-name marker, patch size, hop): a graph file name containing the marker
        gets that size and hop, overriding the defaults and the user's values.
    signal_transform: on the whole signal [N] before framing (FSD-SINet's clip normalisation): a
        signal that arrives in blocks is gathered first, so memory grows with its length.
    band_transform: elementwise on the bands [n_frames, n_bands] before patching.
    patch_transform: on the patches [B, T, F] before the layout.
    layout: see `LAYOUTS`.
    batch_size: Essentia's default batchSize (patches per graph run).
    last_batch_mode: the default of the wrapper's standard-mode `lastBatchMode` (EffNet-Discogs:
        "same"; see `mirfeat.patches.essentia_padding_patches`), None where the wrapper has none.
    input_name, output_name: Essentia's default tensor names.
    embeddings_name: the output Essentia's model pages name for embeddings, where the family has
        one fixed name; conversion keeps it for a graph that comes without its metadata.
    tensor_output: the wrapper returns the graph's output as a tensor (MAEST) instead of one row
        per patch.
    metadata_algorithms: other names a model JSON's inference.algorithm gives for this family:
        Essentia's algorithm on top of the wrapper (its tempo models name `TempoCNN`).
    class_summary: a mean over patches of the activations, and its top classes, say something
        about the clip (`mirfeat run`'s summary); not for CREPE, whose classes are pitch bins.
    """

    algorithm: str
    signature: Frontend | None
    patch_size: int
    patch_hop_size: int
    input_name: str
    output_name: str
    batch_size: int = 64
    embeddings_name: str | None = None
    patch_overrides: tuple[tuple[str, int, int], ...] = ()
    signal_transform: Callable[[np.ndarray], np.ndarray] | None = None
    band_transform: Callable[[np.ndarray], np.ndarray] | None = None
    patch_transform: Callable[[np.ndarray], np.ndarray] | None = None
    layout: str = "squeezed"
    last_batch_mode: str | None = None
    tensor_output: bool = False
    has_training_flag: bool = True  # the wrapper takes isTrainingName
    facade: bool = True  # Essentia has a standard-mode class of this name that takes arrays
    metadata_algorithms: tuple[str, ...] = ()
    class_summary: bool = True

    @property
    def takes_audio(self) -> bool:
        return self.signature is not None

    def patching(
        self, graph_filename: str = "", patch_size: int | None = None, patch_hop_size: int | None = None
    ) -> tuple[int, int]:
        """(patch size, hop) as the wrapper settles them: the file-name rule wins, then the caller's
        values, then the defaults. A hop of 0 means patches do not overlap (hop = size)."""
        for marker, size, hop in self.patch_overrides:
            if marker in graph_filename:
                return size, hop
        size = patch_size or self.patch_size
        hop = self.patch_hop_size if patch_hop_size is None else patch_hop_size
        return size, hop or size

    def bands(self, signal: np.ndarray, transform_signal: bool = True) -> np.ndarray:
        """Mono samples [N] at the signature's rate -> the bands patches are cut from, [n_frames, n_bands].

        transform_signal: apply `signal_transform` (False: FSD-SINet's normalize=false)."""
        chunks = list(self.stream_bands([signal], transform_signal))
        return np.concatenate(chunks) if chunks else np.zeros((0, self._signature.n_bands), np.float32)

    def stream_bands(self, blocks: Iterable[np.ndarray], transform_signal: bool = True) -> Iterator[np.ndarray]:
        """`bands` of a signal that arrives in blocks of samples, chunk by chunk ([frames, n_bands])."""
        if self.signal_transform and transform_signal:
            blocks = self._whole_signal(blocks)
        for chunk in self._signature.stream(blocks):
            yield self.band_transform(chunk) if self.band_transform else chunk

    def with_hop_ms(self, hop_ms: float | None) -> Family:
        """This family with its frames `hop_ms` milliseconds apart (Essentia's `hopSize` of
        TensorflowPredictCREPE / PitchCREPE); None keeps the default. Only CREPE takes a hop."""
        if hop_ms is None:
            return self
        if not isinstance(self.signature, FrameSignature):
            raise ValueError(f"{self.algorithm} frames at a fixed hop; a hop size in ms is CREPE's parameter")
        return replace(self, signature=self.signature.with_hop_ms(hop_ms))

    def _whole_signal(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The blocks gathered into one signal and passed through `signal_transform` (none if empty)."""
        assert self.signal_transform is not None
        parts = [np.asarray(block, np.float32).ravel() for block in blocks]
        signal = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if len(signal):
            yield self.signal_transform(signal)

    @property
    def _signature(self) -> Frontend:
        if self.signature is None:
            raise ValueError(f"{self.algorithm} models read embeddings, not audio")
        return self.signature

    def model_input(self, patches: np.ndarray) -> np.ndarray:
        """Patches [B, T, F] -> what the graph is fed (see `LAYOUTS`); [B, 1, F] patches of one
        embedding row become [B, F]."""
        if self.patch_transform:
            patches = self.patch_transform(patches)
        if self.layout == "bands_time_1":
            return np.ascontiguousarray(patches.transpose(0, 2, 1)[..., None])
        if self.layout == "time_bands_1":
            return patches[..., None]
        return patches[:, 0] if patches.shape[1] == 1 else patches

    def input_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of one graph input (no batch axis) this family feeds, for every patch size it
        may pick; empty for heads (their width is the embedding model's)."""
        if self.signature is None:
            return []
        return [self.input_shape(size) for size in (self.patch_size, *(s for _, s, _ in self.patch_overrides))]

    def input_shape(self, patch_size: int) -> tuple[int, ...]:
        """The shape of one graph input (no batch axis) for patches of `patch_size` frames."""
        dummy = np.zeros((1, patch_size, self._signature.n_bands), np.float32)
        return tuple(self.model_input(dummy).shape[1:])

    def patch_times(self, n_patches: int, patch_hop_size: int | None = None) -> np.ndarray:
        """Start time in seconds of each patch (the centre of its first frame)."""
        if self.signature is None:
            return np.arange(n_patches, dtype=np.float64)
        hop = patch_hop_size or self.patch_hop_size
        return self.signature.frame_times(n_patches * hop)[::hop]


MUSICNN_FAMILY = Family(
    algorithm="TensorflowPredictMusiCNN",
    signature=MUSICNN,
    patch_size=187,
    patch_hop_size=93,
    input_name="model/Placeholder",
    output_name="model/Sigmoid",
)
VGGISH_FAMILY = Family(
    algorithm="TensorflowPredictVGGish",
    signature=VGGISH,
    patch_size=96,
    patch_hop_size=93,
    input_name="model/Placeholder",
    output_name="model/Sigmoid",
)
EFFNET_DISCOGS_FAMILY = Family(
    algorithm="TensorflowPredictEffnetDiscogs",
    signature=MUSICNN,
    patch_size=128,
    patch_hop_size=62,
    input_name="serving_default_melspectrogram",
    output_name="PartitionedCall",
    last_batch_mode="same",
    has_training_flag=False,
)
MAEST_FAMILY = Family(
    algorithm="TensorflowPredictMAEST",
    signature=MUSICNN,
    patch_size=1876,
    patch_hop_size=1875,
    input_name="melspectrogram",
    output_name="Identity",
    batch_size=1,
    patch_overrides=MAEST_PATCHES,
    band_transform=maest_normalise,
    tensor_output=True,
)
TEMPOCNN_FAMILY = Family(
    algorithm="TensorflowPredictTempoCNN",
    signature=TEMPOCNN,
    patch_size=256,
    patch_hop_size=128,
    input_name="input",
    output_name="output",
    batch_size=16,  # the standard-mode wrapper's default (64 in streaming mode)
    patch_transform=standardise_patches,
    layout="bands_time_1",
    has_training_flag=False,
    metadata_algorithms=("TempoCNN",),
)
# Essentia's TensorflowPredictCREPE: one standardised 1024-sample frame per graph row ([B, 1024]
# after TensorflowPredict's squeeze of [B, 1, 1, 1024]), so patches of one frame.
CREPE_FAMILY = Family(
    algorithm="TensorflowPredictCREPE",
    signature=CREPE,
    patch_size=1,
    patch_hop_size=1,
    input_name="frames",
    output_name="model/classifier/Sigmoid",
    batch_size=16,  # the standard-mode wrapper's default (64 in streaming mode and in PitchCREPE)
    has_training_flag=False,
    metadata_algorithms=("PitchCREPE",),
    class_summary=False,
)
FSDSINET_FAMILY = Family(
    algorithm="TensorflowPredictFSDSINet",
    signature=FSDSINET,
    patch_size=101,  # fixed in Essentia's wrapper (not a parameter)
    patch_hop_size=50,
    input_name="x",
    output_name="model/predictions/Sigmoid",
    embeddings_name="model/global_max_pooling1d/Max",
    signal_transform=fsdsinet_normalise,
    layout="time_bands_1",
    has_training_flag=False,
)
PREDICT_2D_FAMILY = Family(
    algorithm="TensorflowPredict2D",
    signature=None,
    patch_size=1,
    patch_hop_size=1,
    input_name="model/Placeholder",
    output_name="model/Sigmoid",
)
# The plain wrapper; Essentia's MAEST genre heads name it in their metadata. Fed one embedding
# row per graph input, like TensorflowPredict2D.
PREDICT_FAMILY = Family(
    algorithm="TensorflowPredict",
    signature=None,
    patch_size=1,
    patch_hop_size=1,
    input_name="model/Placeholder",
    output_name="model/Sigmoid",
    facade=False,  # Essentia's takes pools of named tensors
)

FAMILIES: dict[str, Family] = {
    f.algorithm: f
    for f in (
        MUSICNN_FAMILY,
        VGGISH_FAMILY,
        EFFNET_DISCOGS_FAMILY,
        MAEST_FAMILY,
        TEMPOCNN_FAMILY,
        CREPE_FAMILY,
        FSDSINET_FAMILY,
        PREDICT_2D_FAMILY,
        PREDICT_FAMILY,
    )
}


def family_for(algorithm: str, source: str = "model") -> Family:
    """The family of an Essentia algorithm name; a clear error naming `source` otherwise."""
    try:
        return FAMILIES[algorithm]
    except KeyError:
        for family in FAMILIES.values():
            if algorithm in family.metadata_algorithms:
                return family
        known = ", ".join(FAMILIES)
        raise ModelError(f"{source}: unknown Essentia algorithm {algorithm!r} (known: {known})") from None


def family_for_input(shape: tuple | list, input_name: str | None = None) -> Family | None:
    """The audio family whose wrapper feeds a graph input of this shape (batch axis excluded), or
    None. Unknown axes (None, negative or named, as in TempoCNN's [40, -1, 1]) match any size when
    one family alone fits. A graph whose input is one vector ([D] or [1, D]) is a head:
    `PREDICT_2D_FAMILY`, unless the input carries the name of an audio family fed one vector per
    row (CREPE's `frames` [1024]; a head on 1024-wide YAMNet embeddings has the same shape).
    `input_name` may carry a ":0" suffix."""
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in shape)
    vector = len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)
    name = input_name.removesuffix(":0") if input_name else None
    audio = [f for f in FAMILIES.values() if not (vector and name != f.input_name)]
    exact = [f for f in audio if shape in f.input_shapes()]
    if exact:
        return exact[0]
    fitting = {
        f.algorithm: f
        for f in audio
        for known in f.input_shapes()
        if len(known) == len(shape) and all(d is None or d == k for d, k in zip(shape, known, strict=True))
    }
    if len(fitting) == 1:
        return next(iter(fitting.values()))
    if vector:
        return PREDICT_2D_FAMILY
    return None
