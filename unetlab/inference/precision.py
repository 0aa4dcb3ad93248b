"""Which float precision a forward pass runs in: fp32, or bf16/fp16 autocast.

Why: on CPUs with native bf16 (AMX or AVX-512 bf16: Intel Sapphire Rapids and later, AMD Zen 4
and later) oneDNN runs bf16 convolutions several times faster than fp32 (the classic U-Net at
512 x 512: 3.4x, ``benchmarks/speed.py``, docs/benchmarks.md); elsewhere bf16 is emulated and
slower than fp32. ``auto`` therefore picks bf16 where it is native, fp16 on older CUDA GPUs,
and fp32 on other CPUs. Autocast keeps numerically sensitive operations (softmax, losses,
reductions) in fp32 and returns logits that callers cast back to fp32.
"""

from __future__ import annotations

import torch

from unetlab.errors import UnetlabError

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "auto")


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (not emulated through fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:  # private but stable helpers of torch.cpu (torch >= 2.2); absent -> assume no
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False


def autocast_dtype(
    precision: str, device: torch.device, name: str = "precision"
) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain fp32); ``name`` is how
    errors call the setting (``train.amp`` for training)."""
    if precision not in PRECISIONS:
        raise UnetlabError(
            f"unknown {name} {precision!r}", hint=f"use one of {', '.join(PRECISIONS)}"
        )
    if precision == "auto":
        if has_native_bf16(device):
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else None
    if precision == "fp16" and device.type != "cuda":
        raise UnetlabError(
            f"{name} fp16 needs a CUDA GPU (CPUs have no fast fp16 convolutions)",
            hint="use 'bf16' on the CPU (fast with AMX or AVX-512 bf16), or no mixed precision",
        )
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def precision_name(dtype: torch.dtype | None) -> str:
    """The ``--precision`` name of an autocast dtype (None: fp32)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
