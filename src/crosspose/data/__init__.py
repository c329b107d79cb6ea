"""Data: the common COCO keypoints format, release readers, the synthetic set, the data module."""
