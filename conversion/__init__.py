"""One-time conversion of Essentia TensorFlow graphs to ONNX (needs the `convert` extra)."""
