"""RecLoop models: offline training (TensorFlow, `recloop.models.train*`) and the onnxruntime-only runtime."""
