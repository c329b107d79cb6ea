"""Benchmark layer: throughput and memory side by side with DeepLabCut 3.

``dlc_side.py`` is package data executed by DeepLabCut's own Python; it is never imported.
"""
