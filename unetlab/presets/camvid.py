"""CamVid street scenes, 11 classes + 255 void (SegNet's split), sized for a CPU.

- Model: the classic U-Net at base width 16 with batch norm (trained from scratch: no
  pretrained encoder weights are shipped, and the encoder models are 10-30x the compute).
- Patch 256 from random scales 0.5-1.0 of the 480x360 frames (more context per crop, and the
  objects' scale varies along the street), horizontal flips only (the street has an "up"),
  mild brightness/contrast.
- Loss: cross-entropy with median-frequency class weights computed from the training masks
  (SegNet's choice): pole, sign, pedestrian and bicyclist are about 1% of the pixels each and
  would otherwise never be predicted. 255 = void is ignored by the loss and the metrics.
- AdamW, lr 2e-3, cosine with one warm-up epoch; validation (101 full frames, slow on a CPU)
  every 4 epochs.
"""

PRESET = {
    "data": {
        "patch_size": 256,
        "batch_size": 8,
        "num_workers": 1,
        "augment": {
            "hflip": True,
            "vflip": False,
            "rotate90": False,
            "scale_range": [0.5, 1.0],
            "elastic": 0.0,
            "brightness": 0.2,
            "contrast": 0.2,
        },
    },
    "model": {"name": "unet", "options": {"base": 16, "depth": 4, "padding": "same"}},
    "loss": {"name": "ce", "class_weights": "auto", "class_weight_method": "median"},
    "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4},
    "schedule": {"name": "cosine", "warmup_epochs": 1, "min_lr": 1e-5},
    "train": {"epochs": 60, "val_every": 4, "best_metric": "miou"},
}
