"""The ``unetlab demo``: synthetic shapes (``unetlab data synth``), a small U-Net, about a minute
on two CPU cores.

A small, shallow U-Net (base 16, depth 3, 0.5 M parameters) on 64 px patches of the 128 px
images: the shapes are a few dozen pixels across, so three poolings see whole shapes, and a
step takes a few tens of milliseconds on a laptop CPU. Base 8 was tried and is not enough: on
this data it left one class (circles) unlearnt in two of three 1-minute runs. Flips and
90-degree rotations (shapes have no "up"); a high learning rate with cosine decay, which under
the demo's time budget runs over the minute (see ``train.time_limit_minutes``).
"""

PRESET = {
    "data": {
        "patch_size": 64,
        "batch_size": 8,
        "num_workers": 1,
        "augment": {
            "hflip": True,
            "vflip": True,
            "rotate90": True,
            "scale_range": [1.0, 1.0],
            "elastic": 0.0,
            "brightness": 0.1,
            "contrast": 0.1,
        },
    },
    "model": {"name": "unet", "options": {"base": 16, "depth": 3, "padding": "same"}},
    "loss": {"name": "ce"},
    "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4},
    "schedule": {"name": "cosine", "warmup_epochs": 0.5, "min_lr": 1e-5},
    "train": {"epochs": 12, "val_every": 2, "best_metric": "miou", "num_predictions": 4},
}
