"""Offline training (TensorFlow/Keras) and ONNX export. Only this package imports TensorFlow."""
