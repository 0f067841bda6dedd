"""Edge export (ONNX, INT8, TensorRT) of the GLEAM-C encoder. Filled in by the export issue."""
