"""crosspose: cross-species transfer learning for 2-D pose estimation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crosspose.inference.predictor import Predictor

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(model: Any, device: Any = None, scale: float | str = "fit", batch_size: int = 8,
         precision: str = "auto", compile: str = "auto") -> Predictor:
    """Load a trained network (crosspose checkpoint or exported ``.onnx``) for prediction.

    Returns a :class:`crosspose.inference.predictor.Predictor`; ``predict(video | folder | image |
    arrays)`` gives keypoints with names and ``.to_dataframe()`` in DeepLabCut's layout. ``precision``:
    ``auto`` (bf16 where the GPU or CPU has bf16 units, else fp32), ``fp32``, ``bf16``, ``fp16`` (GPU) or
    ``int8`` (a quantised ``.onnx``); ``compile``: ``auto`` (``torch.compile`` where measured to pay:
    bf16 on a CPU with AMX), ``on`` or ``off``; see :func:`crosspose.inference.predictor.load`. Imported lazily, so
    ``import crosspose`` stays instant.
    """
    from crosspose.inference.predictor import load as _load

    return _load(model, device=device, scale=scale, batch_size=batch_size, precision=precision,
                 compile=compile)
