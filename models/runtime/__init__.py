"""The onnxruntime + numpy runtime for models trained by `models.train`. Never imports TensorFlow."""

from models.runtime.baselines import CooccurrenceRecommender, PopularRecommender
from models.runtime.behaviour import BehaviourOutput, BehaviourRuntime, GeneratedSession
from models.runtime.card import ModelCard, ModelDir, ModelLoadError
from models.runtime.generator import GeneratedUsers, UserGeneratorRuntime
from models.runtime.recommender import Recommender, RecommenderRuntime
from models.runtime.vocab import OOV, PAD, Vocabulary

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
