"""crosspose: cross-species transfer learning for 2-D pose estimation."""

__version__ = "0.1.0"
