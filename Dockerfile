# syntax=docker/dockerfile:1
# One image for RecLoop. `runtime` (the default target for the worker and the simulator) has
# no TensorFlow: models are served with onnxruntime. `train` adds the `train` extra
# (TensorFlow, tf2onnx) for the compose `trainer` service (profile `train`).
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY recloop recloop
COPY streams streams
COPY models models
COPY simulator simulator
RUN pip install . \
    && useradd --create-home --uid 10001 recloop \
    && mkdir -p /app/artifacts/models /app/artifacts/worker-data /app/reports \
    && chown -R recloop /app/artifacts /app/reports
USER recloop
# 9464: worker metrics (RECLOOP_WORKER__METRICS_PORT); 9466: simulator metrics (recloop simulate --metrics-port).
EXPOSE 9464 9466
ENTRYPOINT ["recloop"]
CMD ["--help"]

FROM runtime AS train
USER root
RUN pip install ".[train]"
USER recloop
CMD ["train", "--help"]
