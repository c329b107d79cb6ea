"""Running trained networks: ``crosspose.load``, ``crosspose analyze`` (videos, folders), ``crosspose export``.

Layer: above ``training`` (reads its checkpoints), below ``experiments``/``benchmark``/``cli``.
"""

from crosspose.inference.predictor import Predictor, load
from crosspose.inference.results import PoseSequence

__all__ = ["PoseSequence", "Predictor", "load"]
