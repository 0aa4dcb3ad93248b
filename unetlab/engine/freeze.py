"""Freezing the encoder of a pretrained model for the first epochs.

A frozen encoder must stay *entirely* fixed: ``requires_grad = False`` stops the weights, but
batch-norm layers in training mode would still update their running mean and variance from
every batch (the pretrained statistics drift away, a bug of several U-Net platforms). So after
every ``model.train()`` the encoder's normalisation layers are put back in eval mode.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from unetlab.errors import UnetlabError


def encoder_of(model: nn.Module, model_name: str) -> nn.Module:
    """The ``encoder`` submodule, or a clear error for a model that has none."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise UnetlabError(
            f"train.freeze_encoder_epochs needs a model with a pretrained encoder, and "
            f"'{model_name}' has none",
            hint="choose an encoder model (see 'unetlab summary') or set "
            "train.freeze_encoder_epochs=0",
        )
    return encoder


def set_frozen(encoder: nn.Module, frozen: bool) -> None:
    """Stop (or restart) gradient updates of the encoder's parameters."""
    for parameter in encoder.parameters():
        parameter.requires_grad_(not frozen)


def train_mode(model: nn.Module, frozen_encoder: nn.Module | None) -> None:
    """``model.train()``, keeping a frozen encoder's normalisation statistics fixed."""
    model.train()
    if frozen_encoder is not None:
        for module in frozen_encoder.modules():
            if isinstance(module, _NormBase):
                module.eval()
