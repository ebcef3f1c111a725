"""User generator: a Gaussian mixture over [preference embedding, log activity statistics].

Preference = the recommender's user state (its last hidden vector), which lives in the same
space as the item embeddings, so `preference . item` is how much the user likes the item.
The fitted mixture is exported as a tiny Keras graph: (component, N(0, I) noise) -> features.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from recloop.models.data.stats import UserStats
from recloop.models.train.config import GeneratorConfig


class MixtureSampler(keras.layers.Layer):
    """features = mean[component] + cholesky[component] @ noise."""

    def __init__(self, means: np.ndarray, chol: np.ndarray, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.means = self.add_weight(
            shape=means.shape, initializer="zeros", trainable=False, name="means"
        )
        self.chol = self.add_weight(
            shape=chol.shape, initializer="zeros", trainable=False, name="chol"
        )
        self.means.assign(means.astype(np.float32))
        self.chol.assign(chol.astype(np.float32))

    def call(self, component: object, noise: object) -> object:
        mean = ops.take(self.means, component, axis=0)
        chol = ops.take(self.chol, component, axis=0)
        return mean + ops.squeeze(ops.matmul(chol, ops.expand_dims(noise, -1)), -1)


@dataclass(slots=True)
class FittedGenerator:
    model: keras.Model
    weights: np.ndarray
    low: np.ndarray
    high: np.ndarray
    features: np.ndarray


def fit_generator(
    preference: np.ndarray, stats: UserStats, cfg: GeneratorConfig, seed: int
) -> FittedGenerator:
    """Fit the mixture (scikit-learn) and wrap it as an exportable Keras model."""
    from sklearn.mixture import GaussianMixture

    features = np.concatenate([preference, np.log(stats.matrix())], axis=1)
    k = max(1, min(cfg.components, len(features) // 10))
    gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-3, random_state=seed)
    gmm.fit(features)
    chol = np.linalg.cholesky(gmm.covariances_)
    component = keras.Input((), dtype="int64", name="component")
    noise = keras.Input((features.shape[1],), dtype="float32", name="noise")
    out = MixtureSampler(gmm.means_, chol, name="mixture")(component, noise)
    out = keras.layers.Identity(name="features")(out)
    model = keras.Model([component, noise], out, name="user_generator")
    span = features.max(0) - features.min(0)
    return FittedGenerator(
        model, gmm.weights_, features.min(0) - 0.1 * span, features.max(0) + 0.1 * span, features
    )


def signature(feature_dim: int) -> tuple[tf.TensorSpec, ...]:
    return (
        tf.TensorSpec([None], tf.int64, name="component"),
        tf.TensorSpec([None, feature_dim], tf.float32, name="noise"),
    )
