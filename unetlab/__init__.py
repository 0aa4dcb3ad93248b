"""unetlab: train, measure and use U-Nets for semantic segmentation.

The package is laid out in the order the data flows:
``data`` (read, validate, augment) -> ``models`` (the U-Net family) -> ``losses`` ->
``engine`` (training) -> ``metrics`` (evaluation) -> ``inference`` (predict, tile, TTA) ->
``export`` (ONNX). ``cli`` is a thin command line over these Python APIs.

The names below are the public API, imported on first use (``import unetlab`` stays cheap):
``unetlab.train(preset="isbi2012", data=...)``, ``unetlab.evaluate(run, data=...)``,
``unetlab.Predictor.from_checkpoint(run)``, ``unetlab.read_image(path)`` ... with keyword names
as the command line's options name them.
"""

from unetlab._lazy import lazy_exports

__version__ = "0.1.0"

IGNORE_INDEX = 255
"""Mask value that marks pixels excluded from losses and metrics (VOC convention)."""

_EXPORTS = {
    # train and measure (unetlab train / evaluate / demo)
    "train": "api",
    "dry_run": "api",
    "evaluate": "api",
    "run_config": "api",
    "load_config": "engine.config",
    "RunConfig": "engine.config",
    "run_demo": "engine.demo",
    "load_checkpoint": "engine.checkpoint",
    # use (unetlab predict)
    "predict": "api",
    "Predictor": "inference.predictor",
    "PredictOptions": "inference.core",
    "Prediction": "inference.core",
    # data (unetlab data ...)
    "read_image": "data.io",
    "read_mask": "data.io",
    "write_mask": "data.io",
    "check_dataset": "data.validate",
    "make_splits": "data.convert",
    "make_shapes_dataset": "data.synthetic",
    # models (unetlab summary)
    "build_model": "models.registry",
    "list_models": "models.registry",
    "model_options": "models.registry",
    # errors and threads
    "UnetlabError": "errors",
    "configure_threads": "threads",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = [*__all__, "IGNORE_INDEX", "__version__"]
