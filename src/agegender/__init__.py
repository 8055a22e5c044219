"""agegender: age and gender estimation from face images.

    >>> from agegender import Predictor
    >>> Predictor().predict("photo.jpg").faces

Importing the package does not import torch: inference runs on onnxruntime alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .types import Detection, FacePrediction, Gender, ImageResult, Preprocessing

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .inference import Predictor


def __getattr__(name: str):  # lazy: the Predictor pulls in onnxruntime and OpenCV
    if name == "Predictor":
        from .inference import Predictor

        return Predictor
    raise AttributeError(name)


__all__ = ["Detection", "FacePrediction", "Gender", "ImageResult", "Predictor", "Preprocessing", "__version__"]
