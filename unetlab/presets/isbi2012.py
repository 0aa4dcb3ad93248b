"""ISBI 2012 EM membranes (the U-Net paper's first task), sized for a CPU.

- Model: the classic U-Net at base width 16 (the paper's 64 / 4: about 1/16 of the compute),
  batch norm, **same padding**. Valid padding is the paper's choice, but at CPU-sized tiles
  it wastes most of the work on the border it discards (a 252 px tile gives 68 px of output at
  depth 4, 27x less area than the input); same padding with mirror-padded borders at
  prediction time keeps every computed pixel.
- Patch 256 (random crops of the 512 px slices), 4 per batch; ``repeat`` 4 so an epoch sees
  80 crops of the 20 training slices.
- Augmentation as the paper stresses for 20-30 training images: flips, 90-degree rotations
  (EM has no "up"), elastic deformation (10 px displacements), mild brightness/contrast.
- Loss: the paper's weight-map cross-entropy; objects are the cells (class 0), so the thin
  membrane gaps between touching cells weigh most (w0 = 10, sigma = 5 px as in the paper).
- AdamW, lr 1e-3, cosine to 1e-5 with one warm-up epoch: a robust setting that needs no
  tuning of the paper's SGD momentum 0.99.
"""

PRESET = {
    "data": {
        "patch_size": 256,
        "batch_size": 4,
        "repeat": 4,
        "num_workers": 1,
        "augment": {
            "hflip": True,
            "vflip": True,
            "rotate90": True,
            "scale_range": [0.9, 1.1],
            "elastic": 0.5,
            "elastic_std": 10.0,
            "elastic_sigma": 10.0,
            "brightness": 0.1,
            "contrast": 0.1,
        },
    },
    "model": {"name": "unet", "options": {"base": 16, "depth": 4, "padding": "same"}},
    "loss": {
        "name": "weighted_ce",
        "weight_map": {"w0": 10.0, "sigma": 5.0, "object_classes": [0]},
    },
    "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4},
    "schedule": {"name": "cosine", "warmup_epochs": 1, "min_lr": 1e-5},
    "train": {"epochs": 40, "val_every": 2, "best_metric": "miou"},
}
