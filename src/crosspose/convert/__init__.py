"""DeepLabCut 2 (TensorFlow) and DeepLabCut 3 (PyTorch) models, and TF-slim ImageNet ResNets, as crosspose checkpoints."""
