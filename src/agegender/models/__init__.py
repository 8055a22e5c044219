"""Models: weights records, decoders and estimators. Torch is imported only by the torch-backed parts."""

from .config import ModelConfig, read_config
from .decode import expected_age, female_probability, softmax
from .estimator import Estimator, EstimatorOutput, builtin_models, load_estimator, resolve_model_path

__all__ = [
    "Estimator", "EstimatorOutput", "ModelConfig", "builtin_models", "expected_age", "female_probability",
    "load_estimator", "read_config", "resolve_model_path", "softmax",
]
