"""Seeded replicas of Essentia's newer model families, in Essentia's exact file format.

No weights of these families exist here, so these graphs stand in for them: random weights from a
fixed seed, but Essentia's tensor names, shapes, metadata layout and, as far as known, the way
the real files were made (see /work/shared/docs/essentia-signatures.md, sections 3 to 7). They
run in Essentia's TensorflowPredict* wrappers, and convert and run like the real files. Their
outputs mean nothing musically.

Names: the Essentia model's name with "-seeded" before its version, and "-small" before that for
the small size: discogs-effnet-bs64-1 -> discogs-effnet-bs64-seeded-1 (full size) and
discogs-effnet-bs64-small-seeded-1 (small size). `small` graphs are for tests (under 3 MB, fast to
convert); `full` graphs are about the real size, for benchmarks.

- EffNet-Discogs (TensorflowPredictEffnetDiscogs, 16 kHz), `discogs-effnet-bs64[-small]-seeded-1.pb`:
  a TF2 SavedModel signature frozen to a GraphDef, i.e. a `Placeholder` named
  `serving_default_melspectrogram` [64, 128, 96] and one `PartitionedCall` node whose function
  library holds the network: `PartitionedCall:0` = sigmoid activations [64, 400] and
  `PartitionedCall:1` = embeddings [64, 1280]. The network is EfficientNet-style: a stem conv,
  MBConv blocks (1x1 expansion, depthwise conv, squeeze-excitation, swish, inference batch norm,
  1x1 projection, residual), a 1x1 conv to 1280, global average pooling, and dense 400 + sigmoid.
  Its batch is really fixed: the reshapes have 64 baked in, as the real bs64 graph needs exactly
  64. `full` is EfficientNet-B0's layout (16 MBConv blocks, ~4.6M weights, ~18 MB like the real
  file). `small` has 4 blocks with few channels, still 1280-d embeddings and 400 classes.
- `discogs-effnet-bsdynamic[-small]-seeded-1.onnx` (`publish_effnet_bsdynamic`): the published
  ONNX replica. It is made by converting the same network with a dynamic batch
  (`bsdynamic-source/discogs-effnet-bsdynamic[-small]-seeded-1.pb`, same weights), then renaming
  its tensors as Essentia's discogs-effnet-bsdynamic-1.onnx has them: input `melspectrogram`
  [batch, 128, 96], outputs `activations` [batch, 400] and `embeddings` [batch, 1280]. The JSON
  beside it is written as Essentia publishes one, with the bs64 schema names
  (serving_default_melspectrogram, PartitionedCall:0/1) and no `mirfeat` section.
- EffNet heads on the 1280-d embeddings (TensorflowPredict2D, embedding_model = the bs64 replica):
  `genre_discogs400-discogs-effnet[-small]-seeded-1` in the newer style, frozen the TF2 way
  (`serving_default_model_Placeholder` [batch, 1280] -> `PartitionedCall:0`, sigmoid, 400
  classes), and `danceability-discogs-effnet[-small]-seeded-1` in the older style
  (`model/Placeholder` [1280] -> `model/Softmax` [2], plus `model/dense/BiasAdd` [100]).
- MAEST (TensorflowPredictMAEST), `discogs-maest-{5,10,20,30}s-pw[-small]-seeded-2.pb`: a
  transformer made as the real files were, a two-level tf.function frozen with
  convert_variables_to_constants_v2. Input `melspectrogram` [1, T, 96] (T = 316, 626, 1256, 1876:
  Essentia picks T from the "discogs-maest-<n>s-" in the file name). A 16x16 conv with stride 10
  over (time, mel) makes 9 x ((T - 16) / 10 + 1) patch tokens; CLS and DIST tokens are
  prepended, then come positional embeddings and 12 pre-norm transformer blocks. Outputs:
  `PartitionedCall/Identity_k` (k = 1..12) = block k's output [B, tokens, width],
  `PartitionedCall/Identity` = logits [B, 400], `PartitionedCall/Identity_13` = sigmoid, and the
  top-level `Identity` = sigmoid [B, 400] (the wrapper's default output). The batch is 1 in the
  graph, but every reshape takes it from the input (-1 or a Shape op), so the conversion frees
  it. `small`: width 32, 2 heads, all four lengths. `full`: width 768, 12 heads, MLP 3072,
  12 blocks (~86M weights, ~345 MB, like MAEST-base), 10 s only.
- YAMNet (TensorflowPredictVGGish, 16 kHz), `audioset-yamnet[-small]-seeded-1.pb`: a MobileNet-v1
  body (stem conv, depthwise-separable convs, batch norm, ReLU6), input `melspectrogram`
  [B, 96, 64], outputs `activations` [B, 521] (sigmoid) and `embeddings` [B, 1024] (global
  average pool). `full` is YAMNet's layout (13 separable layers, ~3.7M weights); `small` has 3.
  Head: `danceability-audioset-yamnet[-small]-seeded-1` (`model/Placeholder` [1024] ->
  `model/Softmax`, embedding_model = the YAMNet replica).

- FSD-SINet (TensorflowPredictFSDSINet, 22050 Hz), `fsd-sinet-vgg42-tlpf[-small]-seeded-1.pb`: a
  VGG-style network in the spirit of SINet (the real architecture is not reproduced): blocks of
  3x3 conv, batch norm and ReLU, each followed by a fixed binomial low-pass filter and a stride-2
  subsampling (anti-aliased pooling, as the "tlpf" models), the mean over mel bands, then
  `model/global_max_pooling1d/Max` = the maximum over time (embeddings [B, D]) and a dense layer
  to `model/predictions/Sigmoid` [B, 200]. Input `x` [B, 101, 96, 1] (Essentia's
  [batch, time, mel, channel] after its transpose), dynamic batch, no training flag. The 200
  labels are FSD50K's classes as Essentia's model documentation lists them (alphabetical).
  `full`: 4 blocks of 2 convs (64 to 512 channels, D = 512, ~4.7M weights); `small`: 2 blocks
  of one conv (16, 32 channels, D = 32).

`python -m conversion build-replicas -o DIR [--family effnet|maest|yamnet|fsdsinet|all] [--size small|full]
[--onnx]` writes them (`build`), and with --onnx converts each in its own process and writes the
published bsdynamic ONNX. Small set, all families: about 50 s on 2 cores (7 s of it building).
Full set: about 4 minutes; converting the full MAEST alone takes about 16 GB of memory (tf2onnx
holds ~45x the graph's size), so full conversions run one at a time.

Batch norms use measured statistics: the network first runs eagerly on a seeded batch of
spectrogram-like values and each batch norm takes its input's mean and variance from there (as
if the batch norm were trained). Activations then stay O(1) however deep the network is, so the
conversion check's 1e-4 absolute limit stays meaningful. The small graphs pass it with 1e-5 to spare;
the full ones come closer (measured: EffNet-B0 embeddings 7.8e-5 at batch 64, YAMNet 5.3e-5, MAEST
1.8e-5). That is float32 rounding through 30 to 50 layers: onnxruntime's own optimisation levels
differ by 2.6e-5 on the full YAMNet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from conversion.testmodels import HIDDEN_UNITS, _he, _head, _metadata, _output, _save

FAMILIES = ("effnet", "maest", "yamnet", "fsdsinet")
SIZES = ("small", "full")

SAMPLE_RATE = 16000
EFFNET_BATCH = 64
EFFNET_FRAMES, MUSICNN_BANDS = 128, 96
EFFNET_EMBEDDINGS = 1280
YAMNET_FRAMES, YAMNET_BANDS = 96, 64
YAMNET_EMBEDDINGS, YAMNET_CLASSES = 1024, 521
MAEST_LENGTHS = {5: 316, 10: 626, 20: 1256, 30: 1876}  # seconds -> patch frames (Essentia's overrides)
MAEST_BLOCKS = 12
BSDYNAMIC_SOURCE_DIR = "bsdynamic-source"  # where the dynamic-batch TF graph behind the ONNX goes

# Discogs' 15 top-level genres; the 400 made-up styles cycle through them ("Genre---Style").
_DISCOGS_GENRES = [
    "Blues",
    "Brass & Military",
    "Children's",
    "Classical",
    "Electronic",
    "Folk, World, & Country",
    "Funk / Soul",
    "Hip Hop",
    "Jazz",
    "Latin",
    "Non-Music",
    "Pop",
    "Reggae",
    "Rock",
    "Stage & Screen",
]
DISCOGS_CLASSES = [f"{_DISCOGS_GENRES[i % 15]}---Style{i}" for i in range(400)]
AUDIOSET_CLASSES = [f"AudioSetClass{i}" for i in range(YAMNET_CLASSES)]
DANCEABILITY_CLASSES = ["danceable", "not_danceable"]
FSDSINET_FRAMES, FSDSINET_BANDS, FSDSINET_SAMPLE_RATE = 101, 96, 22050
# FSD50K's 200 classes (AudioSet ontology names), as listed in Essentia's model documentation.
FSD50K_CLASSES = [
    "Accelerating and revving and vroom",
    "Accordion",
    "Acoustic guitar",
    "Aircraft",
    "Alarm",
    "Animal",
    "Applause",
    "Bark",
    "Bass drum",
    "Bass guitar",
    "Bathtub (filling or washing)",
    "Bell",
    "Bicycle",
    "Bicycle bell",
    "Bird",
    "Bird vocalization and bird call and bird song",
    "Boat and Water vehicle",
    "Boiling",
    "Boom",
    "Bowed string instrument",
    "Brass instrument",
    "Breathing",
    "Burping and eructation",
    "Bus",
    "Buzz",
    "Camera",
    "Car",
    "Car passing by",
    "Cat",
    "Chatter",
    "Cheering",
    "Chewing and mastication",
    "Chicken and rooster",
    "Child speech and kid speaking",
    "Chime",
    "Chink and clink",
    "Chirp and tweet",
    "Chuckle and chortle",
    "Church bell",
    "Clapping",
    "Clock",
    "Coin (dropping)",
    "Computer keyboard",
    "Conversation",
    "Cough",
    "Cowbell",
    "Crack",
    "Crackle",
    "Crash cymbal",
    "Cricket",
    "Crow",
    "Crowd",
    "Crumpling and crinkling",
    "Crushing",
    "Crying and sobbing",
    "Cupboard open or close",
    "Cutlery and silverware",
    "Cymbal",
    "Dishes and pots and pans",
    "Dog",
    "Domestic animals and pets",
    "Domestic sounds and home sounds",
    "Door",
    "Doorbell",
    "Drawer open or close",
    "Drill",
    "Drip",
    "Drum",
    "Drum kit",
    "Electric guitar",
    "Engine",
    "Engine starting",
    "Explosion",
    "Fart",
    "Female singing",
    "Female speech and woman speaking",
    "Fill (with liquid)",
    "Finger snapping",
    "Fire",
    "Fireworks",
    "Fixed-wing aircraft and airplane",
    "Fowl",
    "Frog",
    "Frying (food)",
    "Gasp",
    "Giggle",
    "Glass",
    "Glockenspiel",
    "Gong",
    "Growling",
    "Guitar",
    "Gull and seagull",
    "Gunshot and gunfire",
    "Gurgling",
    "Hammer",
    "Hands",
    "Harmonica",
    "Harp",
    "Hi-hat",
    "Hiss",
    "Human group actions",
    "Human voice",
    "Idling",
    "Insect",
    "Keyboard (musical)",
    "Keys jangling",
    "Knock",
    "Laughter",
    "Liquid",
    "Livestock and farm animals and working animals",
    "Male singing",
    "Male speech and man speaking",
    "Mallet percussion",
    "Marimba and xylophone",
    "Mechanical fan",
    "Mechanisms",
    "Meow",
    "Microwave oven",
    "Motor vehicle (road)",
    "Motorcycle",
    "Music",
    "Musical instrument",
    "Ocean",
    "Organ",
    "Packing tape and duct tape",
    "Percussion",
    "Piano",
    "Plucked string instrument",
    "Pour",
    "Power tool",
    "Printer",
    "Purr",
    "Race car and auto racing",
    "Rail transport",
    "Rain",
    "Raindrop",
    "Ratchet and pawl",
    "Rattle",
    "Rattle (instrument)",
    "Respiratory sounds",
    "Ringtone",
    "Run",
    "Sawing",
    "Scissors",
    "Scratching (performance technique)",
    "Screaming",
    "Screech",
    "Shatter",
    "Shout",
    "Sigh",
    "Singing",
    "Sink (filling or washing)",
    "Siren",
    "Skateboard",
    "Slam",
    "Sliding door",
    "Snare drum",
    "Sneeze",
    "Speech",
    "Speech synthesizer",
    "Splash and splatter",
    "Squeak",
    "Stream",
    "Strum",
    "Subway and metro and underground",
    "Tabla",
    "Tambourine",
    "Tap",
    "Tearing",
    "Telephone",
    "Thump and thud",
    "Thunder",
    "Thunderstorm",
    "Tick",
    "Tick-tock",
    "Toilet flush",
    "Tools",
    "Traffic noise and roadway noise",
    "Train",
    "Trickle and dribble",
    "Truck",
    "Trumpet",
    "Typewriter",
    "Typing",
    "Vehicle",
    "Vehicle horn and car horn and honking",
    "Walk and footsteps",
    "Water",
    "Water tap and faucet",
    "Waves and surf",
    "Whispering",
    "Whoosh and swoosh and swish",
    "Wild animals",
    "Wind",
    "Wind chime",
    "Wind instrument and woodwind instrument",
    "Wood",
    "Writing",
    "Yell",
    "Zipper (clothing)",
]


def replica_name(essentia_name: str, size: str) -> str:
    """'discogs-effnet-bs64-1', 'small' -> 'discogs-effnet-bs64-small-seeded-1'."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")
    stem, version = essentia_name.rsplit("-", 1)
    return f"{stem}{'-small' if size == 'small' else ''}-seeded-{version}"


def effnet_name(size: str, batch: str = "bs64") -> str:
    return replica_name(f"discogs-effnet-{batch}-1", size)


def maest_name(seconds: int, size: str) -> str:
    return replica_name(f"discogs-maest-{seconds}s-pw-2", size)


def yamnet_name(size: str) -> str:
    return replica_name("audioset-yamnet-1", size)


def maest_tokens(frames: int) -> int:
    """CLS + DIST + 9 mel x ((frames - 16) / 10 + 1) time patches (16x16 patches, stride 10)."""
    return 9 * ((frames - 16) // 10 + 1) + 2


# --- weights -----------------------------------------------------------------------------------


class _Weights:
    """Seeded weights made on first use and kept, so that a body can run eagerly (to measure its
    batch-norm statistics) and then be traced into a graph with the same weights as constants."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.values: dict[str, np.ndarray] = {}

    def get(self, key: str, make: Callable[[np.random.Generator], np.ndarray]) -> tf.Tensor:
        if key not in self.values:
            self.values[key] = np.asarray(make(self.rng), np.float32)
        return tf.constant(self.values[key], name=key.rsplit("/", 1)[-1])

    def size(self) -> int:
        return sum(v.size for v in self.values.values())

    def batch_norm(self, key: str, x: tf.Tensor) -> tf.Tensor:
        """Inference batch norm (FusedBatchNormV3) whose statistics are measured on first, eager, use."""
        channels = int(x.shape[-1])
        if f"{key}/moving_mean" not in self.values:
            if not tf.executing_eagerly():
                raise RuntimeError(f"{key}: run the body eagerly once first (batch-norm statistics)")
            axes = list(range(x.shape.rank - 1))
            self.values[f"{key}/moving_mean"] = tf.reduce_mean(x, axes).numpy()
            self.values[f"{key}/moving_variance"] = tf.math.reduce_variance(x, axes).numpy() + 1e-3
        gamma = self.get(f"{key}/gamma", lambda r: r.uniform(0.8, 1.2, channels))
        beta = self.get(f"{key}/beta", lambda r: r.normal(0.0, 0.1, channels))
        mean = self.get(f"{key}/moving_mean", None)
        variance = self.get(f"{key}/moving_variance", None)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, mean, variance, epsilon=1e-3, is_training=False)
        return y

    def conv(self, key: str, x: tf.Tensor, channels: int, kernel: int, stride: int = 1, bias: bool = False):
        fan_in = kernel * kernel * int(x.shape[-1])
        w = self.get(f"{key}/kernel", lambda r: _he(r, (kernel, kernel, int(x.shape[-1]), channels), fan_in))
        y = tf.nn.conv2d(x, w, stride, "SAME")
        if bias:
            y = tf.nn.bias_add(y, self.get(f"{key}/bias", lambda r: r.normal(0.0, 0.1, channels)))
        return y

    def depthwise(self, key: str, x: tf.Tensor, kernel: int, stride: int = 1):
        channels = int(x.shape[-1])
        w = self.get(f"{key}/depthwise_kernel", lambda r: _he(r, (kernel, kernel, channels, 1), kernel * kernel))
        return tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], "SAME")

    def dense(self, key: str, x: tf.Tensor, units: int, std: float | None = None):
        """x [N, D] @ W + b; W is He-initialised, or N(0, std) when std is given."""
        fan_in = int(x.shape[-1])
        scale = std if std is not None else np.sqrt(2.0 / fan_in)
        w = self.get(f"{key}/kernel", lambda r: r.standard_normal((fan_in, units)) * scale)
        b = self.get(f"{key}/bias", lambda r: r.normal(0.0, 0.02, units))
        return tf.nn.bias_add(tf.matmul(x, w), b)


def _swish(x):
    return x * tf.sigmoid(x)


def _calibration_batch(seed: int, shape: tuple) -> tf.Tensor:
    """Spectrogram-like values (log-compressed magnitudes) to measure batch-norm statistics on."""
    return tf.constant(np.random.default_rng(seed + 1000).uniform(0.0, 3.0, shape).astype(np.float32))


# --- EffNet-Discogs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EffnetSize:
    stem: int
    # MBConv stages: (expansion ratio, kernel, stride of the first block, output channels, blocks)
    stages: tuple[tuple[int, int, int, int, int], ...]


EFFNET_SIZES = {
    "small": EffnetSize(8, ((1, 3, 1, 8, 1), (6, 3, 2, 16, 1), (6, 5, 1, 16, 1), (4, 3, 2, 24, 1))),
    # EfficientNet-B0
    "full": EffnetSize(
        32,
        ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4))
        + ((6, 3, 1, 320, 1),),
    ),
}


def _mbconv(w: _Weights, key: str, x, expansion: int, kernel: int, stride: int, channels: int):
    with tf.name_scope(key):
        inputs = int(x.shape[-1])
        net = x
        if expansion != 1:
            net = _swish(w.batch_norm(f"{key}/expand_bn", w.conv(f"{key}/expand_conv", net, inputs * expansion, 1)))
        net = _swish(w.batch_norm(f"{key}/bn", w.depthwise(f"{key}/dwconv", net, kernel, stride)))
        with tf.name_scope("se"):
            squeezed = tf.reduce_mean(net, [1, 2], keepdims=True)
            squeezed = _swish(w.conv(f"{key}/se_reduce", squeezed, max(1, inputs // 4), 1, bias=True))
            net = net * tf.sigmoid(w.conv(f"{key}/se_expand", squeezed, int(net.shape[-1]), 1, bias=True))
        net = w.batch_norm(f"{key}/project_bn", w.conv(f"{key}/project_conv", net, channels, 1))
        if stride == 1 and inputs == channels:
            net = net + x
        return net


def _effnet(x, w: _Weights, size: EffnetSize, batch: int | None):
    """[B, 128, 96] -> (activations [B, 400], embeddings [B, 1280]); `batch` is baked into the
    reshapes (None: -1, any batch)."""
    b = -1 if batch is None else batch
    net = tf.reshape(x, [b, EFFNET_FRAMES, MUSICNN_BANDS, 1])
    with tf.name_scope("stem"):
        net = _swish(w.batch_norm("stem/bn", w.conv("stem/conv", net, size.stem, 3, 2)))
    index = 0
    for expansion, kernel, stride, channels, blocks in size.stages:
        for i in range(blocks):
            index += 1
            net = _mbconv(w, f"block{index}", net, expansion, kernel, stride if i == 0 else 1, channels)
    with tf.name_scope("top"):
        net = _swish(w.batch_norm("top/bn", w.conv("top/conv", net, EFFNET_EMBEDDINGS, 1)))
    pooled = tf.reduce_mean(net, [1, 2], name="avg_pool")
    embeddings = tf.reshape(pooled, [b, EFFNET_EMBEDDINGS], name="flatten")
    with tf.name_scope("predictions"):
        activations = tf.sigmoid(w.dense("predictions", embeddings, len(DISCOGS_CLASSES)))
    return activations, embeddings


def _frozen_signature(body: Callable, input_name: str, input_shape: list) -> tf.compat.v1.GraphDef:
    """`Placeholder(input_name) -> PartitionedCall` with `body` (weights as constants) in the
    function library: what freezing a TF2 SavedModel signature to a GraphDef gives."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, input_shape, name=input_name)
        tf.function(body)(x)
    graph_def = graph.as_graph_def()
    assert [n.op for n in graph_def.node] == ["Placeholder", "PartitionedCall"], [n.op for n in graph_def.node]
    return graph_def


def _write(graph_def: tf.compat.v1.GraphDef, path: Path, metadata: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(graph_def.SerializeToString())
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def _tf2_metadata(metadata: dict) -> dict:
    metadata["framework_version"] = tf.__version__
    metadata["model_types"] = ["frozen_model", "SavedModel", "onnx"]
    return metadata


def effnet_metadata(name: str, batch: int | str) -> dict:
    return _tf2_metadata(
        _metadata(
            name,
            "Music style classification",
            DISCOGS_CLASSES,
            [
                {
                    "name": "serving_default_melspectrogram",
                    "type": "float",
                    "shape": [batch, EFFNET_FRAMES, MUSICNN_BANDS],
                }
            ],
            [
                _output("PartitionedCall:0", [batch, len(DISCOGS_CLASSES)], "predictions", "Sigmoid"),
                _output("PartitionedCall:1", [batch, EFFNET_EMBEDDINGS], "embeddings", "Flatten"),
            ],
            {"sample_rate": SAMPLE_RATE, "algorithm": "TensorflowPredictEffnetDiscogs"},
        )
    )


def _effnet_weights(size: str, seed: int) -> _Weights:
    weights = _Weights(seed)
    _effnet(_calibration_batch(seed, (8, EFFNET_FRAMES, MUSICNN_BANDS)), weights, EFFNET_SIZES[size], None)
    return weights


def build_effnet(out_dir: Path, size: str = "small", seed: int = 0) -> tuple[Path, Path]:
    """The bs64 graph (fixed batch 64) and, in `BSDYNAMIC_SOURCE_DIR`, the same network with a
    dynamic batch (the source of the bsdynamic ONNX). Returns both .pb paths."""
    weights = _effnet_weights(size, seed)
    paths = []
    for batch, directory in ((EFFNET_BATCH, Path(out_dir)), (None, Path(out_dir) / BSDYNAMIC_SOURCE_DIR)):
        name = effnet_name(size, "bs64" if batch else "bsdynamic")

        def body(x, batch=batch):
            return _effnet(x, weights, EFFNET_SIZES[size], batch)

        graph_def = _frozen_signature(body, "serving_default_melspectrogram", [batch, EFFNET_FRAMES, MUSICNN_BANDS])
        metadata = effnet_metadata(name, batch or "batch_size")
        paths.append(_write(graph_def, directory / f"{name}.pb", metadata))
    return paths[0], paths[1]


def _rename_tensor(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.name == old:
            value.name = new


def publish_effnet_bsdynamic(converted_onnx: Path, out_dir: Path, size: str = "small") -> Path:
    """The converted dynamic-batch EffNet renamed as Essentia's discogs-effnet-bsdynamic-1.onnx
    names its tensors (`melspectrogram` -> `activations`, `embeddings`), with the JSON beside it
    as Essentia publishes one (the bs64 schema names; no `mirfeat` section)."""
    import onnx

    model = onnx.load(str(converted_onnx))
    graph = model.graph
    names = {
        "serving_default_melspectrogram:0": "melspectrogram",
        "PartitionedCall:0": "activations",
        "PartitionedCall:1": "embeddings",
    }
    present = {v.name for v in [*graph.input, *graph.output]}
    if not set(names) <= present:
        raise ValueError(f"{converted_onnx}: expected tensors {sorted(names)}, found {sorted(present)}")
    for old, new in names.items():
        _rename_tensor(graph, old, new)
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    if batch.dim_value:
        raise ValueError(f"{converted_onnx}: the batch is fixed at {batch.dim_value}; convert the dynamic graph")
    for value in [*graph.input, *graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch_size"
    name = effnet_name(size, "bsdynamic")
    model.doc_string = f"{name}: seeded replica of Essentia's discogs-effnet-bsdynamic-1.onnx (mirfeat)"
    onnx.checker.check_model(model)
    path = Path(out_dir) / f"{name}.onnx"
    onnx.save(model, str(path))
    metadata = effnet_metadata(name, "batch_size")
    metadata["link"] = path.name
    metadata["model_types"] = ["onnx"]
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
    return path


# --- heads -------------------------------------------------------------------------------------


def _embedding_model(algorithm: str, model_name: str) -> dict:
    return {"algorithm": algorithm, "model_name": model_name, "link": f"{model_name}.pb"}


def build_placeholder_head(
    out_dir: Path, name: str, dim: int, classes: list[str], embedding_model: dict, seed: int
) -> Path:
    """The older head style: `model/Placeholder` [B, dim] -> dense 100 (ReLU) -> dense -> `model/Softmax`."""
    graph = tf.Graph()
    with graph.as_default(), tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, dim], name="Placeholder")
        _head(x, seed, len(classes), "Softmax", "softmax")
    metadata = _tf2_metadata(
        _metadata(
            name,
            "multi-class classifier",
            classes,
            [{"name": "model/Placeholder", "type": "float", "shape": [dim]}],
            [
                _output("model/Softmax", [len(classes)], "predictions", "Softmax"),
                _output("model/dense/BiasAdd", [HIDDEN_UNITS], "", "Dense"),
            ],
            {"sample_rate": SAMPLE_RATE, "algorithm": "TensorflowPredict2D", "embedding_model": embedding_model},
        )
    )
    return _save(graph, ["model/Softmax", "model/dense/BiasAdd"], Path(out_dir) / f"{name}.pb", metadata)


def build_signature_head(
    out_dir: Path, name: str, dim: int, classes: list[str], embedding_model: dict, seed: int
) -> Path:
    """The newer head style, frozen the TF2 way: `serving_default_model_Placeholder` [B, dim] ->
    `PartitionedCall` (dense 100, ReLU, dense, sigmoid in its function) -> `PartitionedCall:0`."""

    def body(x):
        with tf.name_scope("model"):
            return _head(x, seed, len(classes), "Sigmoid", "sigmoid")

    graph_def = _frozen_signature(body, "serving_default_model_Placeholder", [None, dim])
    metadata = _tf2_metadata(
        _metadata(
            name,
            "multi-label classifier",
            classes,
            [{"name": "serving_default_model_Placeholder", "type": "float", "shape": ["batch_size", dim]}],
            [_output("PartitionedCall:0", ["batch_size", len(classes)], "predictions", "Sigmoid")],
            {"sample_rate": SAMPLE_RATE, "algorithm": "TensorflowPredict2D", "embedding_model": embedding_model},
        )
    )
    return _write(graph_def, Path(out_dir) / f"{name}.pb", metadata)


def build_effnet_heads(out_dir: Path, size: str = "small", seed: int = 1) -> list[Path]:
    embedding_model = _embedding_model("TensorflowPredictEffnetDiscogs", effnet_name(size))
    return [
        build_signature_head(
            out_dir,
            replica_name("genre_discogs400-discogs-effnet-1", size),
            EFFNET_EMBEDDINGS,
            DISCOGS_CLASSES,
            embedding_model,
            seed,
        ),
        build_placeholder_head(
            out_dir,
            replica_name("danceability-discogs-effnet-1", size),
            EFFNET_EMBEDDINGS,
            DANCEABILITY_CLASSES,
            embedding_model,
            seed + 1,
        ),
    ]


# --- MAEST -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaestSize:
    width: int
    heads: int
    mlp: int
    seconds: tuple[int, ...]  # the lengths built


MAEST_SIZES = {"small": MaestSize(32, 2, 64, (5, 10, 20, 30)), "full": MaestSize(768, 12, 3072, (10,))}


def _layer_norm(w: _Weights, key: str, x):
    width = int(x.shape[-1])
    mean, variance = tf.nn.moments(x, [-1], keepdims=True)
    gamma = w.get(f"{key}/gamma", lambda r: r.uniform(0.8, 1.2, width))
    beta = w.get(f"{key}/beta", lambda r: r.normal(0.0, 0.05, width))
    return (x - mean) * tf.math.rsqrt(variance + 1e-6) * gamma + beta


def _dense_tokens(w: _Weights, key: str, x, units: int, tokens: int):
    """[B, tokens, D] -> [B, tokens, units] as a 2-D matmul (the batch stays free: -1)."""
    fan_in = int(x.shape[-1])
    flat = w.dense(key, tf.reshape(x, [-1, fan_in]), units, std=1.0 / np.sqrt(fan_in))
    return tf.reshape(flat, [-1, tokens, units])


def _transformer_block(w: _Weights, key: str, x, size: MaestSize, tokens: int):
    head_dim = size.width // size.heads
    with tf.name_scope(key):
        h = _layer_norm(w, f"{key}/norm1", x)
        qkv = tf.reshape(
            _dense_tokens(w, f"{key}/qkv", h, 3 * size.width, tokens), [-1, tokens, 3, size.heads, head_dim]
        )
        q, k, v = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]), axis=0)  # each [B, heads, tokens, head_dim]
        attention = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * (head_dim**-0.5), axis=-1)
        h = tf.reshape(tf.transpose(tf.matmul(attention, v), [0, 2, 1, 3]), [-1, tokens, size.width])
        x = x + _dense_tokens(w, f"{key}/proj", h, size.width, tokens)
        h = _dense_tokens(w, f"{key}/fc1", _layer_norm(w, f"{key}/norm2", x), size.mlp, tokens)
        h = 0.5 * h * (1.0 + tf.math.erf(h * np.float32(1 / np.sqrt(2))))  # exact GELU
        return x + _dense_tokens(w, f"{key}/fc2", h, size.width, tokens)


def _maest(x, w: _Weights, size: MaestSize, frames: int) -> list:
    """[B, frames, 96] -> [logits, block 1..12 outputs, sigmoid]: the inner function's outputs,
    named Identity, Identity_1 .. Identity_12, Identity_13 once traced."""
    time_patches = (frames - 16) // 10 + 1
    tokens = maest_tokens(frames)
    width = size.width
    net = tf.expand_dims(x, -1)  # [B, frames, 96, 1]
    with tf.name_scope("patch_embed"):
        kernel = w.get("patch_embed/kernel", lambda r: _he(r, (16, 16, 1, width), 256))
        bias = w.get("patch_embed/bias", lambda r: r.normal(0.0, 0.02, width))
        net = tf.nn.bias_add(tf.nn.conv2d(net, kernel, 10, "VALID"), bias)  # [B, time patches, 9, width]
        net = net + w.get("time_pos_embed", lambda r: r.normal(0.0, 0.2, (1, time_patches, 1, width)))
        net = net + w.get("freq_pos_embed", lambda r: r.normal(0.0, 0.2, (1, 1, 9, width)))
        net = tf.reshape(net, [-1, tokens - 2, width])
    with tf.name_scope("cls_dist"):
        first = w.get("cls_dist_tokens", lambda r: r.normal(0.0, 0.2, (1, 2, width)))
        # The batch comes from a Shape op, not tf.shape (a constant when the input shape is static).
        batch = tf.raw_ops.Shape(input=x)[:1]
        net = tf.concat([tf.tile(first, tf.concat([batch, [1, 1]], 0)), net], axis=1)
    layers = []
    for i in range(MAEST_BLOCKS):
        net = _transformer_block(w, f"blocks/{i}", net, size, tokens)
        layers.append(net)
    net = _layer_norm(w, "norm", net)
    pooled = (net[:, 0] + net[:, 1]) * 0.5  # CLS and DIST tokens
    logits = w.dense("head", pooled, len(DISCOGS_CLASSES), std=1.0 / np.sqrt(width))
    return [logits, *layers, tf.sigmoid(logits)]


def maest_metadata(name: str, frames: int, width: int) -> dict:
    tokens = maest_tokens(frames)
    return _tf2_metadata(
        _metadata(
            name,
            "Music style classification",
            DISCOGS_CLASSES,
            [{"name": "melspectrogram", "type": "float", "shape": [1, frames, MUSICNN_BANDS]}],
            [
                _output("Identity", [1, len(DISCOGS_CLASSES)], "predictions", "Sigmoid"),
                _output("PartitionedCall/Identity_7", [1, tokens, width], "embeddings", "transformer block 7"),
                _output("PartitionedCall/Identity_12", [1, tokens, width], "", "transformer block 12"),
            ],
            {"sample_rate": SAMPLE_RATE, "algorithm": "TensorflowPredictMAEST"},
        )
    )


def build_maest(out_dir: Path, seconds: int = 10, size: str = "small", seed: int = 2) -> Path:
    """A MAEST replica frozen as the real ones: a two-level tf.function (the signature calls the
    model's function), frozen and inlined by convert_variables_to_constants_v2."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frames = MAEST_LENGTHS[seconds]
    dims = MAEST_SIZES[size]
    weights = _Weights(seed)

    @tf.function
    def model(x):
        return _maest(x, weights, dims, frames)

    @tf.function(input_signature=[tf.TensorSpec([1, frames, MUSICNN_BANDS], tf.float32, name="melspectrogram")])
    def signature(melspectrogram):
        outputs = model(melspectrogram)
        return [outputs[-1], *outputs[:-1]]  # top-level Identity = the sigmoid

    frozen = convert_variables_to_constants_v2(signature.get_concrete_function())
    graph_def = frozen.graph.as_graph_def()
    names = {n.name for n in graph_def.node}
    expected = {"melspectrogram", "Identity"} | {f"PartitionedCall/Identity_{k}" for k in range(1, 14)}
    assert expected <= names, sorted(expected - names)
    name = maest_name(seconds, size)
    return _write(graph_def, Path(out_dir) / f"{name}.pb", maest_metadata(name, frames, dims.width))


# --- YAMNet ------------------------------------------------------------------------------------

# (stride, output channels) of each depthwise-separable layer
YAMNET_SIZES = {
    "small": (8, ((1, 16), (2, 32), (2, YAMNET_EMBEDDINGS))),
    "full": (
        32,
        ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512))
        + ((1, 512),) * 5
        + ((2, 1024), (1, YAMNET_EMBEDDINGS)),
    ),
}


def _yamnet(x, w: _Weights, size: str):
    stem, layers = YAMNET_SIZES[size]
    with tf.name_scope("yamnet"):
        net = tf.reshape(x, [-1, YAMNET_FRAMES, YAMNET_BANDS, 1])
        net = tf.nn.relu6(w.batch_norm("layer1/bn", w.conv("layer1/conv", net, stem, 3, 2)))
        for i, (stride, channels) in enumerate(layers, 2):
            net = tf.nn.relu6(
                w.batch_norm(f"layer{i}/depthwise_bn", w.depthwise(f"layer{i}/depthwise", net, 3, stride))
            )
            net = tf.nn.relu6(w.batch_norm(f"layer{i}/pointwise_bn", w.conv(f"layer{i}/pointwise", net, channels, 1)))
        pooled = tf.reduce_mean(net, [1, 2])
        logits = w.dense("logits", pooled, YAMNET_CLASSES)
    return tf.sigmoid(logits, name="activations"), tf.identity(pooled, name="embeddings")


def build_yamnet(out_dir: Path, size: str = "small", seed: int = 3) -> Path:
    weights = _Weights(seed)
    _yamnet(_calibration_batch(seed, (8, YAMNET_FRAMES, YAMNET_BANDS)), weights, size)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, YAMNET_FRAMES, YAMNET_BANDS], name="melspectrogram")
        _yamnet(x, weights, size)
    name = yamnet_name(size)
    metadata = _metadata(
        name,
        "Audio event recognition",
        AUDIOSET_CLASSES,
        [{"name": "melspectrogram", "type": "float", "shape": [YAMNET_FRAMES, YAMNET_BANDS]}],
        [
            _output("activations", [1, YAMNET_CLASSES], "predictions", "Sigmoid"),
            _output("embeddings", [1, YAMNET_EMBEDDINGS], "embeddings", "AveragePooling"),
        ],
        {"sample_rate": SAMPLE_RATE, "algorithm": "TensorflowPredictVGGish"},
    )
    return _save(graph, ["activations", "embeddings"], Path(out_dir) / f"{name}.pb", metadata)


def build_yamnet_head(out_dir: Path, size: str = "small", seed: int = 4) -> Path:
    return build_placeholder_head(
        out_dir,
        replica_name("danceability-audioset-yamnet-1", size),
        YAMNET_EMBEDDINGS,
        DANCEABILITY_CLASSES,
        _embedding_model("TensorflowPredictVGGish", yamnet_name(size)),
        seed,
    )


# --- FSD-SINet --------------------------------------------------------------------------------

# (output channels of each conv, one tuple per block): each block ends with anti-aliased pooling.
FSDSINET_SIZES = {
    "small": ((16,), (32,)),
    "full": ((64, 64), (128, 128), (256, 256), (512, 512)),
}


def fsdsinet_name(size: str) -> str:
    return replica_name("fsd-sinet-vgg42-tlpf-1", size)


def _blur_pool(x):
    """A fixed binomial [1, 2, 1] x [1, 2, 1] / 16 low-pass per channel, then stride 2 in time and mel."""
    taps = np.array([1.0, 2.0, 1.0], np.float32)
    kernel = np.outer(taps, taps) / 16.0
    channels = int(x.shape[-1])
    blur = tf.constant(np.repeat(kernel[:, :, None, None], channels, axis=2), name="lowpass")
    return tf.nn.depthwise_conv2d(x, blur, [1, 2, 2, 1], "SAME")


def _fsdsinet(x, w: _Weights, size: str):
    """[B, 101, 96, 1] -> (sigmoid predictions [B, 200], embeddings [B, D]), named as Essentia's
    FSD-SINet graphs name them."""
    with tf.name_scope("model"):
        net = x
        for b, block in enumerate(FSDSINET_SIZES[size], 1):
            for c, channels in enumerate(block, 1):
                key = f"block{b}/conv{c}"
                net = tf.nn.relu(w.batch_norm(f"{key}/bn", w.conv(key, net, channels, 3)))
            net = _blur_pool(net)
        net = tf.reduce_mean(net, axis=2)  # over mel bands: [B, time, channels]
        with tf.name_scope("global_max_pooling1d"):
            embeddings = tf.reduce_max(net, axis=1, name="Max")
        with tf.name_scope("predictions"):
            logits = w.dense("predictions", embeddings, len(FSD50K_CLASSES))
            predictions = tf.sigmoid(logits, name="Sigmoid")
    return predictions, embeddings


def build_fsdsinet(out_dir: Path, size: str = "small", seed: int = 5) -> Path:
    weights = _Weights(seed)
    calibration = np.random.default_rng(seed + 1000).uniform(-6.0, 3.0, (8, FSDSINET_FRAMES, FSDSINET_BANDS, 1))
    _fsdsinet(tf.constant(calibration.astype(np.float32)), weights, size)  # batch-norm statistics
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, FSDSINET_FRAMES, FSDSINET_BANDS, 1], name="x")
        predictions, embeddings = _fsdsinet(x, weights, size)
    outputs = ["model/predictions/Sigmoid", "model/global_max_pooling1d/Max"]
    assert [predictions.op.name, embeddings.op.name] == outputs, [predictions.op.name, embeddings.op.name]
    name = fsdsinet_name(size)
    width = FSDSINET_SIZES[size][-1][-1]
    metadata = _metadata(
        name,
        "Audio event recognition",
        FSD50K_CLASSES,
        [{"name": "x", "type": "float", "shape": [FSDSINET_FRAMES, FSDSINET_BANDS, 1]}],
        [
            _output(outputs[0], [1, len(FSD50K_CLASSES)], "predictions", "Sigmoid"),
            _output(outputs[1], [1, width], "embeddings", "GlobalMaxPooling1D"),
        ],
        {"sample_rate": FSDSINET_SAMPLE_RATE, "algorithm": "TensorflowPredictFSDSINet"},
    )
    return _save(graph, outputs, Path(out_dir) / f"{name}.pb", metadata)


# --- everything --------------------------------------------------------------------------------


@dataclass
class Replicas:
    graphs: list[Path]  # .pb files (each with its .json) to convert as they are
    effnet_bsdynamic: Path | None = None  # the dynamic-batch EffNet behind the published ONNX


def build(out_dir: str | Path, family: str = "all", size: str = "small") -> Replicas:
    """Write the replicas of `family` ("effnet", "maest", "yamnet", "fsdsinet" or "all") at `size`."""
    out_dir = Path(out_dir)
    families = FAMILIES if family == "all" else (family,)
    if not set(families) <= set(FAMILIES):
        raise ValueError(f"family must be one of {FAMILIES} or 'all', not {family!r}")
    replicas = Replicas([])
    if "effnet" in families:
        bs64, replicas.effnet_bsdynamic = build_effnet(out_dir, size)
        replicas.graphs += [bs64, *build_effnet_heads(out_dir, size)]
    if "maest" in families:
        replicas.graphs += [build_maest(out_dir, seconds, size) for seconds in MAEST_SIZES[size].seconds]
    if "yamnet" in families:
        replicas.graphs += [build_yamnet(out_dir, size), build_yamnet_head(out_dir, size)]
    if "fsdsinet" in families:
        replicas.graphs.append(build_fsdsinet(out_dir, size))
    return replicas
