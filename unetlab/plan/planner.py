"""The planner: a run configuration from a fingerprint, measured step times and a time budget.

:func:`make_plan` is a pure function (no I/O, no clock), so every choice can be tested from
hand-made fingerprints and timings. Each choice carries one line of reason naming the number
that led to it; ``plan.yaml`` prints them beside the fields. The rules, and the measurements
behind them (docs/benchmarks.md, "What helps"):

- **Working resolution**: photographs larger than their structures need are shrunk, so that a
  median image fits one patch, but never so far that the thinnest class's median structure is
  narrower than ``MIN_STRUCTURE`` px (the stride of a depth-4 bottleneck); never enlarged.
  Microscopy with thin membranes and street scenes with thin poles stay at full size.
- **Network**: the classic U-Net with batch norm, same padding. Patch: the images' short side,
  capped (256 px on a CPU, 512 on a GPU); depth: poolings until the bottleneck is at most
  ``BOTTLENECK`` px, so the receptive field spans the patch (a 160 px patch gets 4 poolings, not
  3: on the horses the deeper net scored higher, docs/benchmarks.md). Width: the
  widest of the probed widths that still gets ``MIN_STEPS`` optimizer steps into the budget
  (more steps of a narrow net beat fewer of a wide one on a CPU budget).
- **Precision and layout**: the fastest measured of fp32 NCHW, fp32 NHWC and reduced precision
  NHWC; reduced precision only when at least ``REDUCED_MARGIN`` faster (it is a small numerical
  risk for a speed gain that must be real).
- **Loss**: a binary task whose rarer class forms regions (horses, cells, organs) gets
  cross-entropy + Dice (on the horses it beat plain CE on two seeds); one whose rarer class is
  thin lines, narrower than ``MIN_STRUCTURE`` px (EM membranes), keeps plain cross-entropy
  (Dice lost on Rand error there); a rare foreground (under 10%) always gets the Dice term.
  Several classes: cross-entropy, weighted by 1/sqrt(frequency) when a class is under 2%. No
  border weight map by default: on ISBI 2012 it made membranes too thick and lost to plain CE.
- **Augmentation**: flips; vertical flips and 90-degree rotations only when images have no
  canonical "up" (``orientation``: ``auto`` means free for one-channel images such as
  microscopy, upright for colour photographs); scale jitter for photographs.
- **Optimiser**: AdamW 1e-3 with a short warm-up and cosine decay over the *clock*, so the run
  ends annealed exactly when the budget does.
- **Validation**: about ``VALIDATIONS`` times per run, fewer when one validation would cost more
  than ``VALIDATION_SHARE`` of the budget over the run; the best checkpoint by val mIoU is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from unetlab.data.resolution import working_size
from unetlab.data.splitting import AUTO_TRAIN, AUTO_VAL
from unetlab.engine.config import UNTIL_THE_CLOCK
from unetlab.engine.probe import REDUCED_MARGIN, Candidate, Timing
from unetlab.errors import UnetlabError
from unetlab.plan.fingerprint import Fingerprint

MIN_STEPS = 2000
"""Optimizer steps a width must fit into the budget to be chosen over a narrower one."""
VALIDATIONS = 12
VALIDATION_SHARE = 0.08
WIDTHS = (16, 24, 32)
"""Base widths probed (the classic U-Net has 64; 16 is a quarter of its channels)."""
NARROW_WIDTH = 8
"""Used when not even the narrowest probed width fits a few hundred steps (tiny budgets)."""
BOTTLENECK = 16
"""The largest bottleneck side (px) the depth rule allows."""
MIN_STRUCTURE = 16.0
"""Pixels the thinnest class's median structure keeps at the working resolution; a binary
task's rarer class narrower than this is thin lines to the loss rule (plain CE, no Dice)."""

Orientation = Literal["auto", "free", "upright"]


@dataclass(frozen=True)
class PlanOptions:
    """What the user says (or the machine tells) besides the data."""

    budget_seconds: float
    device: str = "cpu"  # "cpu" or "cuda"
    cores: int = 2
    orientation: Orientation = "auto"
    seconds_spent: float = 0.0  # already used by fingerprinting and probing


@dataclass
class Plan:
    """A run configuration (``RunConfig`` shape) with a reason for each chosen field."""

    config: dict[str, Any]
    reasons: dict[str, str]
    fingerprint: Fingerprint
    timings: list[Timing] = field(default_factory=list)
    predicted_steps: int = 0

    def run_config(self) -> Any:
        from unetlab.engine.config import load_config

        return load_config(self.config)


# ---------------------------------------------------------------- what to probe


def patch_cap(device: str) -> int:
    """The largest training patch side: 256 px on a CPU, 512 on a GPU."""
    return 512 if device == "cuda" else 256


def choose_working_scale(fp: Fingerprint, device: str) -> tuple[float, str]:
    """The working resolution (``data.working_scale``) and its reason; see the module docstring."""
    cap = patch_cap(device)
    long_side = max(fp.median_size)
    widths = {c.name: c.width for c in fp.classes if c.width is not None}
    if not widths or long_side <= cap:
        return 1.0, f"full size: the median image ({long_side} px long) fits one {cap} px patch"
    thinnest = min(widths, key=widths.get)  # type: ignore[arg-type]
    floor = math.ceil(100 * MIN_STRUCTURE / widths[thinnest]) / 100  # two decimals, rounded up
    scale = max(round(cap / long_side, 2), floor)
    if scale >= 1.0:
        return 1.0, (
            f"full size: the thinnest structures ({thinnest}, {widths[thinnest]:.1f} px) would "
            f"fall under {MIN_STRUCTURE:g} px if shrunk"
        )
    return scale, (
        f"{scale:g}: the median image ({long_side} px long) then fits one {cap} px patch and "
        f"the thinnest structures ({thinnest}, {widths[thinnest]:.0f} px) keep "
        f"{widths[thinnest] * scale:.0f} px; prediction resizes back to the input's size"
    )


def working_median_size(fp: Fingerprint, device: str) -> tuple[int, int]:
    """The median image size at the working resolution."""
    scale, _ = choose_working_scale(fp, device)
    return working_size(*fp.median_size, scale)


def network_shape(fp: Fingerprint, device: str) -> tuple[int, int, int]:
    """(patch, depth, batch) from the image size at the working resolution and the device."""
    cap = patch_cap(device)
    short = min(working_median_size(fp, device))
    patch = max(32, min(cap, short // 32 * 32 if short >= 64 else short // 16 * 16))
    depth = max(2, min(5, math.ceil(math.log2(patch / BOTTLENECK))))
    batch = 8 if device == "cuda" else 4
    return patch, depth, batch


def precision_candidates(fp: Fingerprint, device: str) -> list[Candidate]:
    """The layouts and precisions to time at the narrowest width."""
    patch, depth, batch = network_shape(fp, device)
    reduced = "bf16"
    pairs = [("fp32", False), ("fp32", True), (reduced, True)]
    if device == "cuda":
        pairs = [("fp32", False), (reduced, True), ("fp16", True)]
    return [Candidate(WIDTHS[0], depth, patch, batch, p, cl) for p, cl in pairs]


def width_candidates(
    fp: Fingerprint, device: str, precision: str, channels_last: bool
) -> list[Candidate]:
    """The widths to time once precision and layout are chosen."""
    patch, depth, batch = network_shape(fp, device)
    return [Candidate(w, depth, patch, batch, precision, channels_last) for w in WIDTHS]


def choose_precision(timings: list[Timing]) -> tuple[Timing, str]:
    """The fastest layout/precision among the narrowest width's timings, with the reason."""
    narrow = min(t.candidate.base for t in timings)
    pool = [t for t in timings if t.candidate.base == narrow]
    fp32 = [t for t in pool if t.candidate.precision == "fp32"]
    best_fp32 = min(fp32, key=lambda t: t.step_seconds) if fp32 else None
    reduced = [t for t in pool if t.candidate.precision != "fp32"]
    best_reduced = min(reduced, key=lambda t: t.step_seconds) if reduced else None
    measured = ", ".join(
        f"{t.candidate.precision} {'NHWC' if t.candidate.channels_last else 'NCHW'} "
        f"{t.step_seconds:.3f} s" for t in pool
    )
    if best_fp32 is None or (
        best_reduced is not None
        and best_reduced.step_seconds * REDUCED_MARGIN <= best_fp32.step_seconds
    ):
        chosen = best_reduced
    else:
        chosen = best_fp32
    assert chosen is not None
    return chosen, f"fastest measured step ({measured})"


# ---------------------------------------------------------------- the plan


def make_plan(fp: Fingerprint, timings: list[Timing], options: PlanOptions) -> Plan:
    """The plan for ``fp`` given measured ``timings`` (see the module docstring for the rules)."""
    reasons: dict[str, str] = {}
    patch, depth, batch = network_shape(fp, options.device)
    working_scale, why_scale = choose_working_scale(fp, options.device)
    short = min(working_median_size(fp, options.device))
    seconds = options.budget_seconds - options.seconds_spent
    if seconds < 1.0:
        raise UnetlabError(
            f"planning took {options.seconds_spent:.0f} s of the {options.budget_seconds:.0f} s "
            "budget: no time is left to train",
            fp.root,
            "give a larger --budget (planning a dataset takes seconds to a minute on a quiet "
            "machine), or plan once and train the plan: unetlab plan DATA --out plan.yaml",
        )

    speed, why_speed = choose_precision(timings)
    precision, channels_last = speed.candidate.precision, speed.candidate.channels_last
    same_speed = [
        t for t in timings
        if t.candidate.precision == precision and t.candidate.channels_last == channels_last
    ]
    validation_seconds = _validation_seconds(fp, speed, working_scale)
    budget_for_steps = seconds - min(validation_seconds * VALIDATIONS, VALIDATION_SHARE * seconds)
    base, steps, why_width = _choose_width(same_speed, budget_for_steps)

    reasons["model.options.base"] = why_width
    reasons["model.options.depth"] = (
        f"{depth} poolings take the {patch} px patch to a {patch >> depth} px bottleneck"
    )
    reasons["data.working_scale"] = why_scale
    reasons["data.patch_size"] = (
        f"the images' median short side is {short} px"
        + (" at the working scale" if working_scale != 1 else "")
        + f"; capped at {patch_cap(options.device)} px on {options.device.upper()}"
    )
    reasons["data.batch_size"] = (
        f"{batch} patches per step: enough for batch norm on {options.device.upper()}"
    )
    amp = "off" if precision == "fp32" else precision
    reasons["train.amp"] = why_speed
    reasons["train.channels_last"] = why_speed

    # validation cadence: epochs of about steps / n_validations, one validation per epoch
    validations = VALIDATIONS
    if validation_seconds * VALIDATIONS > VALIDATION_SHARE * seconds:
        validations = max(2, int(VALIDATION_SHARE * seconds / max(validation_seconds, 1e-9)))
    epoch_steps = max(1, steps // validations)
    repeat = max(1, round(epoch_steps * batch / max(fp.num_images, 1)))
    reasons["data.repeat"] = (
        f"an epoch of about {max(1, repeat * fp.num_images // batch)} steps: about {validations} "
        f"validations of the {fp.num_val_images} val images (about {validation_seconds:.0f} s "
        f"each) in the budget"
    )

    orientation = options.orientation
    if orientation == "auto":
        orientation = "free" if fp.channels == 1 else "upright"
        why_up = (
            f"orientation auto: {fp.channels}-channel images taken as "
            + ("microscopy-like, no canonical up" if orientation == "free" else
               "photographs with an up")
            + " (override with --orientation free|upright)"
        )
    else:
        why_up = f"orientation {orientation} (as asked)"
    free = orientation == "free"
    augment = {
        "hflip": True,
        "vflip": free,
        "rotate90": free,
        "scale_range": [1.0, 1.0] if free else [0.75, 1.25],
        "elastic": 0.0,
        "brightness": 0.1,
        "contrast": 0.1,
    }
    reasons["data.augment.rotate90"] = why_up
    reasons["data.augment.scale_range"] = (
        "no scale jitter: microscopy has a fixed pixel size" if free
        else "objects in photographs appear at varying distances"
    )
    reasons["data.augment.elastic"] = (
        "off: its CPU cost buys fewer steps than it is worth (ablation)"
    )

    tta = "flips+rot90" if free else "hflip"
    reasons["inference.tta"] = (
        f"{tta}: the symmetries training augmented with, averaged at prediction "
        f"({'8' if free else '2'}x the inference time; measured better on every score of "
        "isbi2012 and weizmann_horse, docs/benchmarks.md); predict/evaluate --no-tta turn it off"
    )

    loss, why_loss, class_weights, why_weights = _choose_loss(fp)
    reasons["loss.name"] = why_loss
    if class_weights:
        reasons["loss.class_weights"] = why_weights

    warmup = max(20, min(200, steps // 30))
    reasons["optim.lr"] = "AdamW 1e-3: robust from scratch with batch norm"
    reasons["schedule.name"] = (
        f"cosine over the clock ({seconds / 60:.1f} min), after {warmup} warm-up steps: the run "
        "ends annealed when the budget does"
    )
    workers = 0 if options.cores <= 2 else min(4, options.cores - 2)
    reasons["data.num_workers"] = (
        f"{workers}: on {options.cores} cores a loader process would take a core from the "
        "network" if workers == 0 else f"{workers} loader processes beside the network's threads"
    )
    reasons["train.time_limit_minutes"] = (
        f"the budget ({options.budget_seconds / 60:.1f} min) less "
        f"{options.seconds_spent:.0f} s spent planning; about {steps} steps predicted"
        if options.seconds_spent else
        f"the budget ({options.budget_seconds / 60:.1f} min); about {steps} steps predicted"
    )
    if fp.split == AUTO_TRAIN:
        reasons["data.train_split"] = (
            f"the dataset has no split lists: the automatic split holds {fp.num_val_images} of "
            f"{fp.num_images + fp.num_val_images} labelled images out for {AUTO_VAL} (seed 0; "
            "whole sequences when the names show them); 'unetlab data split' writes your own"
        )
    if fp.shared_groups:
        reasons["data.val_split"] = (
            f"{fp.val_split}: WARNING its images come from sequences training also has ("
            f"{', '.join(fp.shared_groups[:3])}): its scores flatter the model on new data; hold "
            "out whole sequences: unetlab data split DATA --group auto --out lists/"
        )
    normalization = {"mean": [round(m, 4) for m in fp.mean], "std": [round(s, 4) for s in fp.std]}
    reasons["data.normalization"] = "the training images' per-channel mean and std"

    config: dict[str, Any] = {
        "data": {
            "root": fp.root,
            **({"train_split": fp.split} if fp.split != "train" else {}),
            **({"val_split": fp.val_split} if fp.val_split != "val" else {}),
            "working_scale": working_scale,
            "patch_size": patch,
            "batch_size": batch,
            "repeat": repeat,
            "num_workers": workers,
            "normalization": normalization,
            "augment": augment,
        },
        "model": {
            "name": "unet",
            "options": {"base": base, "depth": depth, "padding": "same", "batch_norm": True},
        },
        "loss": {"name": loss, **({"class_weights": "auto", "class_weight_method": "sqrt_inverse"}
                                  if class_weights else {})},
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4},
        "schedule": {"name": "cosine", "warmup_steps": warmup, "min_lr": 1e-6},
        "train": {
            "epochs": UNTIL_THE_CLOCK,
            "val_every": 1,
            "best_metric": "miou",
            "amp": amp,
            "channels_last": channels_last,
            "device": options.device,
            "time_limit_minutes": round(seconds / 60.0, 3),
        },
        "inference": {"tta": tta},
    }
    return Plan(config, reasons, fp, list(timings), predicted_steps=steps)


def _validation_seconds(fp: Fingerprint, timing: Timing, working_scale: float) -> float:
    """One pass over the val images at the working scale: forward cost per megapixel, plus half
    again for reading, padding and scoring."""
    pixels = fp.val_pixels * working_scale**2
    return 1.5 * timing.forward_seconds_per_mpixel * pixels / 1e6


def _choose_width(timings: list[Timing], seconds: float) -> tuple[int, int, str]:
    """The widest probed width that fits ``MIN_STEPS`` steps into ``seconds``."""
    by_width = sorted(timings, key=lambda t: t.candidate.base)
    fits = [t for t in by_width if seconds / t.step_seconds >= MIN_STEPS]
    measured = ", ".join(f"base {t.candidate.base}: {t.step_seconds:.3f} s" for t in by_width)
    if fits:
        chosen = fits[-1]
        steps = int(seconds / chosen.step_seconds)
        return chosen.candidate.base, steps, (
            f"widest that fits {MIN_STEPS} steps in {seconds / 60:.1f} min (step {measured})"
        )
    narrow = by_width[0]
    steps = int(seconds / narrow.step_seconds)
    if steps >= MIN_STEPS // 4:
        return narrow.candidate.base, steps, (
            f"narrowest probed: no width fits {MIN_STEPS} steps in {seconds / 60:.1f} min "
            f"(step {measured})"
        )
    scale = (narrow.candidate.base / NARROW_WIDTH) ** 2
    steps = int(seconds * scale / narrow.step_seconds)
    return NARROW_WIDTH, steps, (
        f"base {NARROW_WIDTH}: even base {narrow.candidate.base} fits only "
        f"{int(seconds / narrow.step_seconds)} steps in {seconds / 60:.1f} min"
    )


def _choose_loss(fp: Fingerprint) -> tuple[str, str, bool, str]:
    """(loss, reason, class weights on, reason)."""
    rarest = min(fp.classes, key=lambda c: c.pixel_share)
    if fp.num_classes == 2:
        name, share, width = rarest.name, f"{100 * rarest.pixel_share:.1f}%", rarest.width
        if rarest.pixel_share < 0.10:
            return "ce_dice", (
                f"cross-entropy + Dice: the rarer class ({name}) is only {share} of the pixels"
            ), False, ""
        if width is not None and width < MIN_STRUCTURE:
            return "ce", (
                f"cross-entropy: the rarer class ({name}, {share}) is thin lines "
                f"({width:.1f} px wide, under {MIN_STRUCTURE:g}); Dice, which rewards a fuller "
                "mask, measured worse at keeping such lines unbroken"
            ), False, ""
        wide = "" if width is None else f" ({width:.0f} px wide)"
        return "ce_dice", (
            f"cross-entropy + Dice: the rarer class ({name}, {share}) forms regions{wide} "
            "whose overlap is what IoU and Dice score"
        ), False, ""
    rare = [c.name for c in fp.classes if c.pixel_share < 0.02]
    if rare:
        return "ce", "cross-entropy, weighted for the rare classes", True, (
            f"auto, 1/sqrt(frequency): {', '.join(rare)} are under 2% of the pixels each"
        )
    return "ce", "cross-entropy: no class under 2% of the pixels", False, ""
