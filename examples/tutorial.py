"""Essentia's "models" tutorial, on mirfeat: auto-tagging, classification, embeddings.

    python examples/tutorial.py AUDIO --models DIR [--out DIR]

DIR holds converted models; make them with the conversion step:

    python -m conversion build-test-models -o DIR --onnx   # VGGish-architecture models (seeded weights)

The auto-tagging part uses the bundled msd-musicnn-1. The VGGish models in DIR have seeded random
weights: their labels show the mechanics, not music. With Essentia's published models (converted,
or their .onnx files), the same code gives the real answers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mirfeat.essentia import MonoLoader, TensorflowPredict2D, TensorflowPredictMusiCNN, TensorflowPredictVGGish
from mirfeat.families import MUSICNN_FAMILY, VGGISH_FAMILY
from mirfeat.model import load_model
from mirfeat.plot import plot_activations, plot_embeddings


def print_classes(labels: list[str], activations) -> None:
    """`label: xx.x%` per class, from the mean over patches (as Essentia's tutorial prints)."""
    for label, probability in zip(labels, activations.mean(axis=0), strict=True):
        print(f"{label}: {100 * probability:.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", type=Path)
    parser.add_argument("--models", type=Path, required=True, help="folder with the converted VGGish models")
    parser.add_argument("--out", type=Path, default=Path("."), help="where to write the plots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    audio = MonoLoader(sampleRate=16000, filename=str(args.audio))()

    # 1. Auto-tagging: activations [patches, 50] with the class labels from the model's metadata.
    tagger = load_model("msd-musicnn-1")
    activations = TensorflowPredictMusiCNN(graphFilename=str(tagger.path))(audio)
    times = MUSICNN_FAMILY.patch_times(len(activations))
    plot_activations(activations, tagger.labels, times, args.out / "autotagging.png", title="msd-musicnn-1")
    print(f"auto-tagging: {activations.shape[0]} patches x {activations.shape[1]} tags -> autotagging.png")

    # 2. Classification, legacy style: one graph from spectrogram to classes.
    classifier = args.models / "twoclass-vggish-seeded-1.onnx"
    metadata = json.loads(classifier.with_suffix(".json").read_text())
    act = TensorflowPredictVGGish(graphFilename=str(classifier), output="model/Softmax")(audio)
    print(f"classification ({metadata['name']}):")
    print_classes(metadata["classes"], act)

    # 2b. Current style: the embedding model once, then a head on its embeddings.
    embeddings = TensorflowPredictVGGish(
        graphFilename=str(args.models / "vggish-seeded-1.onnx"), output="model/vggish/embeddings"
    )(audio)
    head = args.models / "task1-vggish-seeded-1.onnx"
    head_metadata = json.loads(head.with_suffix(".json").read_text())
    predictions = TensorflowPredict2D(graphFilename=str(head), output="model/Softmax")(embeddings)
    print(f"classification ({head_metadata['name']} on {head_metadata['inference']['embedding_model']['model_name']}):")
    print_classes(head_metadata["classes"], predictions)

    # 3. Embedding extraction: MusiCNN's 200-d embeddings from the same model, and VGGish's.
    musicnn_embeddings = TensorflowPredictMusiCNN(graphFilename=str(tagger.path), output="model/dense/BiasAdd")(audio)
    plot_embeddings(musicnn_embeddings, times, args.out / "embeddings-musicnn.png", title="msd-musicnn-1 embeddings")
    vggish_times = VGGISH_FAMILY.patch_times(len(embeddings))
    plot_embeddings(embeddings, vggish_times, args.out / "embeddings-vggish.png", title="vggish-seeded-1 embeddings")
    print(f"embeddings: musicnn {musicnn_embeddings.shape}, vggish {embeddings.shape} -> embeddings-*.png")


if __name__ == "__main__":
    main()
