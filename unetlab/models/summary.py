"""A Keras-style model summary: layers with output shapes and parameters, totals, GFLOPs.

The forward pass runs on PyTorch's ``meta`` device (shapes only, no arithmetic, no memory for
activations), so summarising a large model at 512x512 is instant on any machine. FLOPs come from
:class:`torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per multiply-accumulate
of convolutions, transposed convolutions and matrix products; batch norm, activations, pooling
and resizing are not counted (they are a small fraction of a U-Net's work).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

FLOPS_NOTE = (
    "FLOPs = 2 x multiply-accumulates of convolutions and matrix products, counted by "
    "torch.utils.flop_counter.FlopCounterMode"
)


@dataclass(frozen=True)
class LayerRow:
    """One leaf module as the forward pass met it."""

    name: str
    type: str
    output_shape: tuple[int, ...] | list[tuple[int, ...]]
    params: int


@dataclass
class ModelSummary:
    """Result of :func:`summarize`; ``str()`` renders the table, :meth:`line` one sentence."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    layers: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    param_bytes: int = 0
    conv_layers: int = 0
    flops: int = 0
    training_only_params: int = 0

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def _input_text(self) -> str:
        return "x".join(map(str, self.input_shape[1:]))

    def line(self) -> str:
        """E.g. ``unet: 23 conv layers, 31.0 M params, 218.9 GFLOPs at 3x512x512``."""
        extra = (
            f" (+{self.training_only_params:,} in training-only heads)"
            if self.training_only_params
            else ""
        )
        return (
            f"{self.name}: {self.conv_layers} conv layers, {self.total_params / 1e6:.1f} M params"
            f"{extra}, {self.gflops:.1f} GFLOPs at {self._input_text()}"
        )

    def __str__(self) -> str:
        rows = [(f"{r.name} ({r.type})", _shape_text(r.output_shape), f"{r.params:,}") for r in
                self.layers]  # fmt: skip
        header = ("Layer (type)", "Output Shape", "Param #")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
        width = sum(widths) + 6

        def render(row: Sequence[str]) -> str:
            return f"{row[0]:<{widths[0]}}   {row[1]:<{widths[1]}}   {row[2]:>{widths[2]}}"

        lines = [
            f'Model: "{self.name}"  input {_shape_text(self.input_shape)} -> output '
            f"{_shape_text(self.output_shape)}",
            "_" * width,
            render(header),
            "=" * width,
            *(render(row) for row in rows),
            "=" * width,
            f"Total params: {self.total_params:,} ({self.param_bytes / 2**20:.2f} MB)",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.total_params - self.trainable_params:,}",
            f"Conv layers: {self.conv_layers}",
            f"Forward GFLOPs: {self.gflops:.2f} at {self._input_text()}, batch 1 ({FLOPS_NOTE})",
        ]
        return "\n".join(lines)


def _shape_text(shape: tuple[int, ...] | list[tuple[int, ...]]) -> str:
    if isinstance(shape, list):
        return ", ".join(_shape_text(s) for s in shape)
    return "(" + ", ".join(map(str, shape)) + ")"


def _shapes(output: object) -> tuple[int, ...] | list[tuple[int, ...]]:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (list, tuple)):
        return [tuple(t.shape) for t in output if isinstance(t, torch.Tensor)]
    return ()


def summarize(
    model: nn.Module, input_shape: Sequence[int] = (3, 512, 512), name: str | None = None
) -> ModelSummary:
    """Run one shape-only forward pass of a ``C x H x W`` input (batch 1) and tabulate it.

    Args:
        model: any ``nn.Module`` (left untouched: weights are not copied, mode is restored).
        input_shape: ``(C, H, W)``.
        name: title; defaults to the registry name in ``model.spec`` or the class name.
    """
    spec = getattr(model, "spec", None)
    title = name or (spec["name"] if isinstance(spec, dict) else type(model).__name__)
    # the deployed network: training-only modules (deep-supervision heads) are counted apart
    extra_modules: list[nn.Module] = getattr(model, "training_only_modules", list)()
    extra = {id(p) for m in extra_modules for p in m.parameters()}
    params = [p for p in model.parameters() if id(p) not in extra]
    extra_convs = {id(m) for e in extra_modules for m in e.modules()}
    summary = ModelSummary(
        title,
        (1, *input_shape),
        (),
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        conv_layers=sum(
            isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and id(m) not in extra_convs
            for m in model.modules()
        ),
        training_only_params=sum(p.numel() for m in extra_modules for p in m.parameters()),
    )
    seen: set[str] = set()

    def record(module_name: str):
        def hook(module: nn.Module, _inputs: object, output: object) -> None:
            if module_name in seen:  # a module used twice (e.g. a shared ReLU): first call only
                return
            seen.add(module_name)
            own = sum(p.numel() for p in module.parameters())
            row = LayerRow(module_name, type(module).__name__, _shapes(output), own)
            summary.layers.append(row)

        return hook

    leaves = [
        (n or type(m).__name__, m)  # a bare layer is its own only leaf
        for n, m in model.named_modules()
        if not any(True for _ in m.children()) and not isinstance(m, nn.Identity)
    ]
    handles = [m.register_forward_hook(record(n)) for n, m in leaves]
    tensors = {
        **{k: torch.empty_like(v, device="meta") for k, v in model.named_parameters()},
        **{k: torch.empty_like(v, device="meta") for k, v in model.named_buffers()},
    }
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros((1, *input_shape), device="meta")
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            output = functional_call(model, tensors, (x,))
        summary.flops = int(counter.get_total_flops())
        summary.output_shape = tuple(output.shape)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return summary
