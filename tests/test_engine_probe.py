"""``train.amp: auto`` on a CPU is measured, and the step timer times what it says."""

from __future__ import annotations

import pytest
import torch

from unetlab.engine import probe
from unetlab.models import build_model


def fake_timer(seconds: dict[str, float]):
    calls = []

    def time_step(model, in_channels, num_classes, patch, batch, precision, channels_last,
                  device, **_):
        calls.append(precision)
        return seconds[precision], seconds[precision] / 4

    return time_step, calls


@pytest.mark.parametrize(
    ("fp32", "bf16", "expected"),
    [(1.0, 0.5, "bf16"), (1.0, 0.95, "fp32"), (1.0, 1.3, "fp32"), (0.02, 0.001, "fp32")],
)
def test_auto_precision_follows_the_stopwatch(monkeypatch, fp32, bf16, expected) -> None:
    timer, calls = fake_timer({"fp32": fp32, "bf16": bf16})
    monkeypatch.setattr(probe, "time_step", timer)
    model = build_model("unet", 2, in_channels=1, base=4, depth=2)
    choice, why = probe.measured_cpu_precision(model, 1, 2, (32, 32), 2, True)
    assert choice == expected
    if fp32 < probe.TINY_STEP_SECONDS:
        assert calls == ["fp32"] and "too small" in why  # bf16 not even tried
    else:
        assert calls == ["fp32", "bf16"] and f"{bf16:.3f}" in why


def test_time_step_leaves_the_model_as_it_found_it_when_given_a_copy() -> None:
    import copy

    model = build_model("unet", 3, in_channels=1, base=4, depth=2).eval()
    before = copy.deepcopy(model.state_dict())
    step, forward = probe.time_step(copy.deepcopy(model), 1, 3, (32, 32), 2, "fp32", False,
                                    torch.device("cpu"), steps=1, warmup=0)
    assert step > 0 and forward > 0
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_time_step_trains_the_model_it_is_given() -> None:
    """The step is a real optimizer step: weights move (so callers must pass a copy)."""
    model = build_model("unet", 2, in_channels=1, base=4, depth=2)
    first = next(model.parameters()).detach().clone()
    probe.time_step(model, 1, 2, (32, 32), 2, "fp32", True, torch.device("cpu"), steps=1,
                    warmup=0)
    assert not torch.equal(first, next(model.parameters()).detach())
