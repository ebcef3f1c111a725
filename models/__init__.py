"""RecLoop models: offline training (TensorFlow, `models.train*`) and the onnxruntime-only runtime."""
