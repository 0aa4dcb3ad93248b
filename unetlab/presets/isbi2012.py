"""ISBI 2012 EM membranes (the U-Net paper's first task): the planner's 20-minute CPU plan.

Regenerated from ``unetlab plan ../shared/datasets/isbi2012 --budget 20m``, which beat a plain
U-Net script at equal minutes on every score (docs/benchmarks.md, "Models that win"), with the
clock-based schedule replaced by epochs (about 2,500 steps, the plan's count on 2 cores):

- Model: the classic U-Net at base width 16 (the paper's 64 / 4), batch norm, same padding
  (mirror-padded borders at prediction time keep every computed pixel).
- Patch 256 (random crops of the 512 px slices), 4 per batch; ``repeat`` 10 so an epoch is 50
  steps; validation every 5 epochs (4 slices: about a second).
- Augmentation: flips and 90-degree rotations (EM has no "up"); no elastic deformation and no
  scale jitter: on a CPU budget both cost more steps than they are worth (5-minute ablation).
- Loss: plain cross-entropy. The paper's border weight map gave thicker membranes and worse
  pixel and Rand error than plain CE in the ablation; it stays one ``--set loss.name=weighted_ce``
  away.
- AdamW 1e-3, cosine to 1e-6 after a 100-step warm-up. ``train.amp`` stays ``auto``: bf16 where
  a timed step on this machine is faster, fp32 elsewhere.
- Prediction averages the 8 flips and rotations (``inference.tta: flips+rot90``; better on every
  score at 20 minutes, Rand error 0.166 -> 0.139); ``--no-tta`` turns it off.
"""

PRESET = {
    "data": {
        "patch_size": 256,
        "batch_size": 4,
        "repeat": 10,
        "num_workers": 0,
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
    "model": {"name": "unet", "options": {"base": 16, "depth": 4, "padding": "same"}},
    "loss": {"name": "ce"},
    "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4},
    "schedule": {"name": "cosine", "warmup_steps": 100, "min_lr": 1e-6},
    "train": {"epochs": 50, "val_every": 5, "best_metric": "miou"},
    "inference": {"tta": "flips+rot90"},
}
