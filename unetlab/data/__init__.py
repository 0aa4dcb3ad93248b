"""Data: read images and masks, find dataset layouts, validate, convert, augment, load.

Names are imported lazily (on first use), so ``import unetlab.data`` stays cheap and the
augmentation library is only loaded by code that augments.
"""

from __future__ import annotations

from unetlab._lazy import lazy_exports

_EXPORTS = {
    "read_image": "io",
    "read_mask": "io",
    "write_mask": "io",
    "IMAGE_EXTENSIONS": "io",
    "voc_colormap": "colors",
    "DatasetInfo": "layouts",
    "dataset_info": "layouts",
    "SegmentationDataset": "datasets",
    "WeightMapOptions": "datasets",
    "open_dataset": "datasets",
    "DatasetReport": "validate",
    "check_dataset": "validate",
    "format_report": "validate",
    "make_splits": "convert",
    "fix_binary_masks": "convert",
    "tiff_stack_to_slices": "convert",
    "labelme_to_masks": "labelme",
    "labelme_to_dataset": "labelme",
    "make_shapes_dataset": "synthetic",
    "AugmentConfig": "transforms",
    "build_transform": "transforms",
    "pad_sample_to_multiple": "transforms",
    "make_loader": "loader",
    "Normalization": "preprocess",
    "image_to_tensor": "preprocess",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
