"""What a file that should be a checkpoint really is, from its first bytes.

``torch.load`` reports random bytes, an ONNX model or a Keras file as an "unpickling" failure
and appends advice to retry with ``weights_only=False``: wrong for those files, and unsafe for
any file. Looking at the leading bytes first lets the error say what the file actually is.
"""

from __future__ import annotations

import struct
from pathlib import Path

TORCH_ZIP, PICKLE, ONNX, HDF5, SAFETENSORS, EMPTY, TEXT, UNKNOWN = (
    "torch zip",
    "pickle",
    "onnx",
    "hdf5",
    "safetensors",
    "empty",
    "text",
    "unknown",
)

DESCRIPTIONS = {
    ONNX: "an ONNX model, not a PyTorch checkpoint",
    HDF5: "an HDF5 file (e.g. Keras .h5 weights), not a PyTorch checkpoint",
    SAFETENSORS: "a safetensors file, not a unetlab checkpoint",
    EMPTY: "an empty file (0 bytes), not a checkpoint",
    TEXT: "a text file, not a checkpoint",
    UNKNOWN: "not a PyTorch file at all (its bytes match no known format)",
}


def sniff(path: str | Path) -> str:
    """The kind of file ``path`` is (one of the module constants)."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head:
        return EMPTY
    if head.startswith(b"PK\x03\x04"):
        return TORCH_ZIP
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return PICKLE
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return HDF5
    if len(head) > 9 and head[8:9] == b"{":
        size = struct.unpack("<Q", head[:8])[0]
        if 0 < size < 100_000_000:
            return SAFETENSORS
    if _looks_like_onnx(head):
        return ONNX
    try:
        head.decode("utf-8")
        return TEXT
    except UnicodeDecodeError:
        return UNKNOWN


def _looks_like_onnx(head: bytes) -> bool:
    """An ONNX ModelProto starts with field 1 (``ir_version``, a small varint) followed by
    another field key, typically ``producer_name`` (field 2) or ``opset_import`` (8)."""
    return (
        len(head) > 3
        and head[0] == 0x08
        and 1 <= head[1] <= 20
        and head[2] in (0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42)
    )
