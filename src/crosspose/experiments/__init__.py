"""Experiment layer: the demo and the ablation grid, built from training runs."""
