"""Inference: the Predictor (detect, crop, estimate) and input expansion."""

from .predictor import Predictor, expand_inputs

__all__ = ["Predictor", "expand_inputs"]
