"""Offline training (TensorFlow/Keras) and ONNX export. Only this package imports TensorFlow.

`train_all` imports TensorFlow through `import_tensorflow_quietly()` before anything else does,
so `recloop train` and `recloop demo` show RecLoop's output, not TensorFlow's start-up log.
Set `TF_CPP_MIN_LOG_LEVEL=0` to see that log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null (C++ code writes there, not to `sys.stderr`)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (once) without its C++ start-up lines, and quieten its Python loggers."""
    # Before the first import: TensorFlow reads it once, for its own C++ logging.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        return
    # TensorFlow 2.21 logs through absl before absl::InitializeLog() is called, which ignores
    # TF_CPP_MIN_LOG_LEVEL (oneDNN, "Could not find cuda drivers", the InitializeLog warning).
    # Those lines are written while the shared libraries load, so silence fd 2 only then; an
    # ImportError is raised after it is restored and still shows.
    with _stderr_to_devnull():
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
