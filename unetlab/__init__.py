"""unetlab: train, measure and use U-Nets for semantic segmentation.

The package is laid out in the order the data flows:
``data`` (read, validate, augment) -> ``models`` (the U-Net family) -> ``losses`` ->
``engine`` (training) -> ``metrics`` (evaluation) -> ``inference`` (predict, tile, TTA) ->
``export`` (ONNX). ``cli`` is a thin command line over these Python APIs.
"""

__version__ = "0.1.0"

IGNORE_INDEX = 255
"""Mask value that marks pixels excluded from losses and metrics (VOC convention)."""
