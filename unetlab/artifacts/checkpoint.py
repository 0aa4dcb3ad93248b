"""Reading checkpoints: safely (``weights_only=True``), from a file or a run folder.

The keys a checkpoint holds are listed in :mod:`unetlab.engine.checkpoint`, which writes them;
reading lives here, below ``inference`` and ``export``, so that opening a model never imports
the trainer. A file crafted to run code when unpickled is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unetlab.errors import UnetlabError

CHECKPOINT_NAMES = ("best.pt", "last.pt")


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a checkpoint file or a run folder (``runs/NAME``: its best, else last, checkpoint)."""
    path = Path(path)
    if path.is_dir():
        for folder in (path / "checkpoints", path):
            for name in CHECKPOINT_NAMES:
                if (folder / name).is_file():
                    return folder / name
        raise UnetlabError(
            "no checkpoint in this folder (looked for checkpoints/best.pt and checkpoints/last.pt)",
            path,
            "pass a run folder made by 'unetlab train' or a .pt checkpoint file",
        )
    if not path.is_file():
        raise UnetlabError("checkpoint not found", path, "check the path")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); a file or a run folder."""
    path = resolve_checkpoint(path)
    from unetlab.fs.filekind import PICKLE, TORCH_ZIP, sniff
    from unetlab.fs.oserrors import translated

    with translated(path, "read the checkpoint"):
        kind = sniff(path)
    if kind not in (TORCH_ZIP, PICKLE):
        raise not_a_checkpoint(path, kind)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnetlabError(
            "refused to load: the file holds Python objects other than weights"
            f"{forbidden_object(exc)}, which could run code when loaded",
            path,
            "only load checkpoints you trust; unetlab's own checkpoints load safely",
        ) from None
    except Exception as exc:  # truncated, or a damaged torch file (sniff met any OS error)
        raise unreadable_checkpoint(path, exc) from None
    if isinstance(payload, dict) and "model" not in payload and payload and all(
        isinstance(v, torch.Tensor) for v in payload.values()
    ):
        raise UnetlabError(
            f"this holds bare weights (a state_dict of {len(payload)} tensors, e.g. "
            f"'{next(iter(payload))}'), not a unetlab checkpoint: the model name, classes and "
            "normalisation needed to use them are missing",
            path,
            "use a checkpoint written by 'unetlab train' (RUN/checkpoints/best.pt); weights for "
            "an encoder (torchvision layout) are loaded with --set model.pretrained=FILE when "
            "training",
        )
    if not isinstance(payload, dict) or "model" not in payload or "state_dict" not in payload:
        raise UnetlabError(
            "this is a torch file but not a unetlab checkpoint (no 'model' and 'state_dict')",
            path,
            "use a checkpoint written by 'unetlab train' (RUN/checkpoints/best.pt or last.pt)",
        )
    payload["path"] = str(path)
    return payload


def not_a_checkpoint(path: Path, kind: str) -> UnetlabError:
    """The error for a file whose leading bytes show it is no torch file at all."""
    from unetlab.fs.filekind import DESCRIPTIONS, EMPTY, ONNX

    hint = {
        ONNX: f"an .onnx file is used as it is: unetlab predict {path} IMAGE, unetlab evaluate "
        f"{path} --data DATA; rename it to end in .onnx",
        EMPTY: "the write was cut short (a crash or a full disk); use checkpoints/last.pt or "
        "retrain",
    }.get(kind, "pass a checkpoint written by 'unetlab train' (RUN/checkpoints/best.pt)")
    return UnetlabError(f"refused to load: {DESCRIPTIONS[kind]}", path, hint)


def unreadable_checkpoint(path: Path, exc: BaseException) -> UnetlabError:
    return UnetlabError(
        f"not a readable checkpoint ({type(exc).__name__}: {first_line(exc)})",
        path,
        "the file may be truncated or damaged; use checkpoints/last.pt or retrain",
    )


def forbidden_object(exc: BaseException) -> str:
    """`` (os.system)``: the object torch refused, from its message; torch's advice to retry
    with ``weights_only=False`` is never passed on (it is unsafe, and often wrong)."""
    import re

    for pattern in (r"GLOBAL ([\w.]+)", r"Unsupported class ([\w.]+)"):
        found = re.search(pattern, str(exc))
        if found:
            return f" (it refers to {found.group(1)})"
    return ""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (some, like EOFError, have none)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "no details"


def model_from_checkpoint(checkpoint: dict[str, Any]) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (eval mode, on CPU)."""
    from unetlab.models import build_model

    spec = checkpoint["model"]
    options = spec.get("options", {})
    model = build_model(
        spec["name"], spec["num_classes"], in_channels=spec["in_channels"], **options
    )
    load_state_dict_checked(model, checkpoint["state_dict"], checkpoint.get("path"))
    return model.eval()


def load_state_dict_checked(model: nn.Module, state_dict: dict, source: str | None) -> None:
    """``load_state_dict`` with a readable error when the weights belong to another model."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        details = "; ".join(
            f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatch", mismatched),
            )
            if items
        )
        raise UnetlabError(
            f"the weights do not fit this model ({details})",
            source,
            "the checkpoint was made for another model, class count or channel count; "
            "rebuild the model with the options stored in the checkpoint",
        )
    model.load_state_dict(state_dict)
