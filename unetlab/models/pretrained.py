"""Load ImageNet (or any compatible) weights into a model's encoder, and say what happened.

Sources: a local path, a ``file://`` URL, or an ``http(s)://`` URL downloaded once into the cache
(``$UNETLAB_CACHE``, default ``~/.cache/unetlab``; written atomically so an interrupted download
never leaves a half file that looks complete). The file is read with ``weights_only=True`` and
may be a torchvision checkpoint (keys as torchvision names them: the encoders use the same
module names, so the keys map unchanged and the classifier is an expected extra), a wrapped
state dict (``{"state_dict": ...}``, a DDP ``module.`` prefix), or a unetlab checkpoint, whose
``encoder.*`` weights are used. With ``in_channels != 3`` the first conv's RGB filters are
averaged and repeated, scaled by ``3 / in_channels`` so that activations keep their magnitude
(the adaptation segmentation_models.pytorch uses for 1 channel, generalised).
"""

from __future__ import annotations

import os
import pickle
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from unetlab.errors import UnetlabError
from unetlab.models.encoders import Encoder

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
"""Keys under which checkpoints commonly nest the state dict, tried in this order."""


def cache_dir() -> Path:
    """Where downloaded weights are kept: ``$UNETLAB_CACHE`` or ``~/.cache/unetlab``."""
    return Path(os.environ.get("UNETLAB_CACHE", "~/.cache/unetlab")).expanduser() / "weights"


def download(url: str, folder: Path | None = None) -> Path:
    """Fetch ``url`` into ``folder`` (default :func:`cache_dir`) unless already there.

    The file is written to a temporary name, checked against the announced length, synced,
    then renamed: a crash leaves no partial file under the final name.
    """
    folder = cache_dir() if folder is None else Path(folder)
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "weights.pth"
    target = folder / name
    if target.is_file():
        return target
    from unetlab.fs.atomic import write_file

    def fetch(out: Any) -> None:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length else None
                received = 0
                with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=None) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, TimeoutError, ValueError) as exc:  # not the disk's fault
            raise UnetlabError(
                f"could not download the weights ({type(exc).__name__}: {exc})",
                url,
                "check the URL and the network, or download the file yourself and pass its path",
            ) from None
        if total is not None and received != total:
            raise UnetlabError(
                f"download incomplete: got {received} of {total} bytes", url, "retry"
            )

    write_file(target, fetch)  # temp file, fsync, rename; the user's umask
    return target


def resolve_source(source: str | Path, what: str = "pretrained weights file") -> Path:
    """A local file for ``source``: a path, a ``file://`` URL, or a downloaded ``http(s)`` URL."""
    text = str(source)
    scheme = urllib.parse.urlparse(text).scheme if "://" in text else ""
    if scheme in ("http", "https"):
        return download(text)
    if scheme == "file":
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(text).path))
    elif scheme:
        raise UnetlabError(
            f"unsupported URL scheme '{scheme}'", text, "use a path, file://, http:// or https://"
        )
    else:
        path = Path(text).expanduser()
    if not path.is_file():
        raise UnetlabError(f"{what} not found", path, "check the path")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safe load), unwrapped from common checkpoint layouts."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnetlabError(
            "refused to load: the file holds Python objects other than weights "
            f"({str(exc).splitlines()[0]})",
            path,
            "use a plain state dict (torchvision's .pth files are)",
        ) from None
    except Exception as exc:
        raise UnetlabError(
            f"not a readable torch weights file ({type(exc).__name__})", path, "re-download it"
        ) from None
    for key in WRAPPER_KEYS:
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            inner = payload[key]
            if any(isinstance(v, torch.Tensor) for v in inner.values()):
                payload = inner
                break
    if not isinstance(payload, dict):
        raise UnetlabError("the file does not hold a state dict", path)
    state = {k: v for k, v in payload.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):  # saved from DDP
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB filters ``(out, 3, k, k)`` -> ``(out, in_channels, k, k)``: the channel mean repeated,
    scaled by ``3 / in_channels`` so that a grey input gives the same response as before."""
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) * (weight.shape[1] / in_channels)


def _rgb_filters_for(weight: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether ``weight`` is an RGB first conv that :func:`adapt_first_conv` can fit to
    ``target`` (same filters and kernel, another input channel count)."""
    return (
        weight.dim() == 4
        and weight.shape[1] == 3
        and target.shape[1] != 3
        and weight.shape[0] == target.shape[0]
        and weight.shape[2:] == target.shape[2:]
    )


def _preview(keys: list[str], limit: int = 8) -> str:
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


@dataclass
class LoadReport:
    """What :func:`load_encoder_weights` or :func:`load_model_weights` did, key by key
    (printable). ``target`` names what was loaded into (``encoder 'vgg16'``, ``model 'unet'``)."""

    target: str
    source: str
    file: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    target_tensors: int = 0
    title: str = "pretrained weights"

    @property
    def encoder_tensors(self) -> int:
        return self.target_tensors

    @property
    def complete(self) -> bool:
        """Every tensor of the target came from the file."""
        return not self.missing and not self.mismatched

    def __str__(self) -> str:
        where = self.source if self.source == self.file else f"{self.source} ({self.file})"
        noun = self.target.split(" ", 1)[0]
        lines = [
            f"{self.title} for {self.target} from {where}:",
            f"  loaded:         {len(self.loaded)} of {self.target_tensors} {noun} tensors",
        ]
        if self.adapted:
            lines.append(f"  adapted:        {_preview(self.adapted)} (RGB filters averaged)")
        if self.ignored:
            lines.append(
                f"  ignored:        {len(self.ignored)} tensors the {noun} does not use "
                f"({_preview(self.ignored, 3)})"
            )
        mismatched = [f"{k} file {a} vs model {b}" for k, a, b in self.mismatched]
        for label, keys in (
            ("missing:", self.missing),
            ("unexpected:", self.unexpected),
            ("shape mismatch:", mismatched),
        ):
            lines.append(f"  {label:<15} {len(keys)}" + (f" ({_preview(keys)})" if keys else ""))
        return "\n".join(lines)


def _find_encoder(model_or_encoder: nn.Module) -> Encoder:
    if isinstance(model_or_encoder, Encoder):
        return model_or_encoder
    encoder = getattr(model_or_encoder, "encoder", None)
    if isinstance(encoder, Encoder):
        return encoder
    raise UnetlabError(
        f"{type(model_or_encoder).__name__} has no pretrained encoder",
        hint="pretrained weights apply to encoder models: vgg16_unet, resnet50_unet, "
        "mobilenet_unet",
    )


def load_encoder_weights(model_or_encoder: nn.Module, source: str | Path) -> LoadReport:
    """Copy matching weights from ``source`` into the encoder; see the module docstring.

    Tensors the encoder does not build (classifier, cut levels, a unetlab decoder) are
    *ignored*; anything else that does not match is reported as *unexpected*, encoder tensors
    the file lacks as *missing*, wrong shapes as *shape mismatch* (those keep their values).

    Raises:
        UnetlabError: unreadable file, or no tensor fits (e.g. another architecture's weights).
    """
    encoder = _find_encoder(model_or_encoder)
    path = resolve_source(source)
    state = read_state_dict(path)
    report = LoadReport(f"encoder '{encoder.name}'", str(source), str(path))
    if any(k.startswith("encoder.") for k in state):  # a whole unetlab model: keep its encoder
        report.ignored = [k for k in state if not k.startswith("encoder.")]
        state = {
            k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")
        }
    hint = f"pass weights of a {encoder.name} network, e.g. torchvision's {encoder.weights_url}"
    return _load_matching(
        encoder, state, report, path, hint, encoder.unused_prefixes(), encoder.first_conv
    )


def load_model_weights(model: nn.Module, source: str | Path) -> LoadReport:
    """Initial weights for a whole model (``model.init_weights``): a state dict written by
    ``torch.save(model.state_dict(), path)`` in another project or an older script, a wrapped
    one (``{"state_dict": ...}``, DDP's ``module.``) or a unetlab checkpoint.

    Loaded safely (``weights_only=True``), key by key as :func:`load_encoder_weights` does:
    tensors that fit are loaded, the rest reported as unexpected, missing or mismatched.

    Raises:
        UnetlabError: unreadable or unsafe file, or not one tensor fits this model.
    """
    path = resolve_source(source, what="initial weights file")
    name = getattr(model, "spec", {}).get("name", type(model).__name__)
    report = LoadReport(f"model '{name}'", str(source), str(path), title="initial weights")
    hint = (
        "pass a state dict saved from the same architecture, class count and channel count "
        "(torch.save(model.state_dict(), PATH))"
    )
    return _load_matching(model, read_state_dict(path), report, path, hint)


def _load_matching(
    target: nn.Module,
    state: dict[str, torch.Tensor],
    report: LoadReport,
    path: Path,
    hint: str,
    unused: tuple[str, ...] = (),
    first_conv: str | None = None,
) -> LoadReport:
    """Copy the tensors of ``state`` whose key and shape fit ``target`` and fill ``report``:
    keys with an ``unused`` prefix are *ignored*, other unknown ones *unexpected*, target
    tensors the file lacks *missing*, wrong shapes *shape mismatch* (those keep their values);
    an RGB ``first_conv`` is adapted to the target's channel count."""
    own = target.state_dict()
    report.target_tensors = len(own)
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        wanted = own.get(key)
        if wanted is None:
            (report.ignored if unused and key.startswith(unused) else report.unexpected).append(
                key
            )
            continue
        if key == first_conv and _rgb_filters_for(value, wanted):
            value = adapt_first_conv(value, wanted.shape[1])
            report.adapted.append(key)
        if value.shape != wanted.shape:
            report.mismatched.append((key, tuple(value.shape), tuple(wanted.shape)))
            continue
        to_load[key] = value.to(wanted.dtype)
        report.loaded.append(key)
    skipped = {k for k, _, _ in report.mismatched} | set(to_load)
    # num_batches_tracked only matters for BN without momentum; old checkpoints lack it
    report.missing = [k for k in own if k not in skipped and not k.endswith("num_batches_tracked")]
    if not to_load:
        raise UnetlabError(
            f"none of the {len(state)} tensors in the file fit {report.target} "
            f"(file keys: {_preview(list(state), 4)}; {report.target.split(' ', 1)[0]} keys: "
            f"{_preview(list(own), 4)})",
            path,
            hint,
        )
    target.load_state_dict(to_load, strict=False)
    return report
