"""Export (imports torch): ONNX with decoding and metadata."""
