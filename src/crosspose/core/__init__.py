"""Core layer: errors, skeletons and heatmap codecs. Imports nothing else from crosspose."""
