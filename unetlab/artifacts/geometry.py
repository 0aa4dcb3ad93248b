"""Which input sides a network accepts and how its output lines up with its input.

Part of every artifact: a checkpoint's geometry follows from its model, an export stores it as
metadata. numpy-free and torch-free, so the ONNX Runtime path reads it without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Geometry:
    """Which input sides a network accepts and how its output lines up with its input.

    A same-padding network maps an input side ``n`` (a multiple of ``multiple``) to an output
    side ``n``. A valid-padding U-Net maps an input side ``o + margin`` to an output side ``o``,
    where ``o`` must be ``out_residue`` modulo ``multiple`` and at least ``min_output``; output
    pixel ``j`` then sees input pixel ``j + margin // 2`` at its centre.
    """

    multiple: int = 1
    margin: int = 0
    out_residue: int = 0
    min_output: int = 1

    def __post_init__(self) -> None:
        if self.multiple < 1 or self.margin < 0 or self.margin % 2 or self.min_output < 1:
            raise ValueError(f"inconsistent network geometry {self}")

    @property
    def offset(self) -> int:
        """Input pixels lost on each side: output pixel ``j`` is centred on input ``j + offset``."""
        return self.margin // 2

    def output_size(self, needed: int) -> int:
        """The smallest output side the network can produce that is at least ``needed``."""
        size = max(int(needed), self.min_output)
        return size + (self.out_residue - size) % self.multiple

    def output_size_within(self, input_side: int) -> int:
        """The largest output side whose input side is at most ``input_side`` (or the minimum)."""
        size = int(input_side) - self.margin
        size -= (size - self.out_residue) % self.multiple
        return max(size, self.output_size(1))

    def input_size(self, output_side: int) -> int:
        """The input side that yields ``output_side`` (which must be a valid output side)."""
        return int(output_side) + self.margin

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Geometry:
        keys = ("multiple", "margin", "out_residue", "min_output")
        return cls(**{key: int(values[key]) for key in keys})


def unwrap(model: Any) -> Any:
    """The plain model inside DDP/DataParallel (``.module``) or ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None or not callable(inner):
            return model
        model = inner


def model_geometry(model: Any) -> Geometry:
    """The input/output size arithmetic of a unetlab model.

    Same padding: input sides must be multiples of ``model.size_multiple``, output = input.
    Valid padding (``model.padding == "valid"``): the margin comes from
    :mod:`unetlab.models.padding` for the model's ``depth``. A module that carries its own
    ``geometry`` (an exported graph wrapped as a module) gives it.
    """
    model = unwrap(model)
    stored = getattr(model, "geometry", None)
    if isinstance(stored, Geometry):
        return stored
    multiple = int(getattr(model, "size_multiple", 1))
    if getattr(model, "padding", "same") != "valid":
        return Geometry(multiple=multiple, min_output=multiple)
    from unetlab.models.padding import valid_input_size, valid_output_size

    depth = int(model.depth)
    smallest_input = int(valid_input_size(1, depth))
    smallest_output = int(valid_output_size(smallest_input, depth))
    return Geometry(
        multiple=multiple,
        margin=smallest_input - smallest_output,
        out_residue=smallest_output % multiple,
        min_output=smallest_output,
    )
