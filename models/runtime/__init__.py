"""The onnxruntime + numpy runtime for models trained by `recloop.models.train`. Never imports TensorFlow."""

from recloop.models.runtime.baselines import CooccurrenceRecommender, PopularRecommender
from recloop.models.runtime.behaviour import BehaviourOutput, BehaviourRuntime, GeneratedSession
from recloop.models.runtime.card import ModelCard, ModelDir, ModelLoadError
from recloop.models.runtime.generator import GeneratedUsers, UserGeneratorRuntime
from recloop.models.runtime.recommender import Recommender, RecommenderRuntime
from recloop.models.runtime.vocab import OOV, PAD, Vocabulary

__all__ = [
    "OOV",
    "PAD",
    "BehaviourOutput",
    "BehaviourRuntime",
    "CooccurrenceRecommender",
    "GeneratedSession",
    "GeneratedUsers",
    "ModelCard",
    "ModelDir",
    "ModelLoadError",
    "PopularRecommender",
    "Recommender",
    "RecommenderRuntime",
    "UserGeneratorRuntime",
    "Vocabulary",
]
