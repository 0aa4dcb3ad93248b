"""``RUN/predictions/``: what the trained model makes of a few validation images.

For each of the first ``count`` images: ``<id>.png`` (image | truth | prediction panel with a
class legend), and the two files ``unetlab predict`` writes for an image: ``<id>_mask.png`` (the
predicted index mask as a palette PNG) and ``<id>_overlay.png`` (the classes tinted on the
image, the background left clear). A glance at these tells more than a mIoU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from unetlab.engine.builders import DataSpec


@torch.no_grad()
def save_predictions(
    model: nn.Module,
    dataset: Any,
    spec: DataSpec,
    out_dir: Path,
    count: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> list[Path]:
    """Predict the first ``count`` items of ``dataset`` and write panel, mask and overlay
    PNGs."""
    from unetlab.data.io import write_mask
    from unetlab.engine.plots import denormalize, file_names, save_panel
    from unetlab.inference.forward import predict_logits
    from unetlab.inference.labels import labels_from_logits
    from unetlab.inference.overlay import make_palette, save_overlay

    was_training = model.training
    model.eval()
    written: list[Path] = []
    shown = range(min(count, len(dataset)))
    ids = getattr(dataset, "ids", None)
    names = file_names([str(ids[i]) if ids is not None else dataset[i]["id"] for i in shown])
    try:
        for index in range(min(count, len(dataset))):
            sample = dataset[index]
            image = sample["image"][None].to(device)
            with torch.autocast(
                device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                logits = predict_logits(model, image)
            labels = labels_from_logits(logits, channel_axis=1)[0].cpu().numpy().astype("uint8")
            name = names[index]
            picture = denormalize(sample["image"], spec.normalization.mean, spec.normalization.std)
            written.append(
                save_panel(
                    picture, sample["mask"].numpy(), labels, spec.class_colors,
                    out_dir / f"{name}.png", spec.class_names,
                )
            )
            colors = [(int(c[0]), int(c[1]), int(c[2])) for c in spec.class_colors]
            written.append(write_mask(out_dir / f"{name}_mask.png", labels, colors))
            written.append(
                save_overlay(out_dir / f"{name}_overlay.png", picture, labels, make_palette(colors))
            )
    finally:
        model.train(was_training)
    return written
