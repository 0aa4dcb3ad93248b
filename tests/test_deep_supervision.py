"""Deep supervision: auxiliary heads on the decoder, scored in training only.

Checked against independent references: the loss against cross-entropy written out with the
hand-computed weights 4/7, 2/7, 1/7; the auxiliary logits against the head's 1x1 convolution
as a matrix product on the decoder stage's output (captured by a hook) and torch's bilinear
resize; inference against the same weights in a model built without heads; the trainer by what
its checkpoint holds (the heads moved from their initial weights, so gradients reached them).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unetlab.engine import trainer as trainer_module
from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint
from unetlab.engine.trainer import train
from unetlab.errors import UnetlabError
from unetlab.losses import build_loss
from unetlab.losses.deep_supervision import deep_supervision_loss, deep_supervision_weights
from unetlab.models import build_model

from test_engine_train import tiny_config, tiny_dataset  # isort: skip


def test_weights_halve_per_level_and_sum_to_one():
    assert deep_supervision_weights(0) == [1.0]
    assert deep_supervision_weights(2) == pytest.approx([4 / 7, 2 / 7, 1 / 7])


def test_loss_is_the_weighted_sum_of_cross_entropies_and_plain_without_heads():
    gen = torch.Generator().manual_seed(3)
    logits, a1, a2 = (torch.randn(2, 3, 8, 8, generator=gen) for _ in range(3))
    target = torch.randint(0, 3, (2, 8, 8), generator=gen)
    target[0, 0, :4] = 255  # ignored pixels are ignored at every level
    ce = build_loss("ce", 3)

    def reference(x: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(x, target, ignore_index=255)

    total, main = deep_supervision_loss(ce, logits, [a1, a2], target)
    want = 4 / 7 * reference(logits) + 2 / 7 * reference(a1) + 1 / 7 * reference(a2)
    assert float(total) == pytest.approx(float(want), rel=1e-6)
    assert float(main) == pytest.approx(float(reference(logits)), rel=1e-6)
    plain_total, plain_main = deep_supervision_loss(ce, logits, [], target)
    assert float(plain_total) == float(plain_main) == pytest.approx(
        float(reference(logits)), rel=1e-6
    )


@pytest.mark.parametrize(("name", "options", "stage"), [
    ("unet", {"base": 4, "depth": 3}, lambda m: m.up),
    ("mobilenet_unet", {}, lambda m: m.decoder),
])
def test_aux_logits_are_the_heads_on_the_decoder_stages_resized(name, options, stage):
    model = build_model(name, 3, 3, deep_supervision=2, **options).eval()
    stages = list(stage(model))
    seen: dict[int, torch.Tensor] = {}
    for i, block in enumerate(stages):
        block.register_forward_hook(lambda _m, _i, out, i=i: seen.__setitem__(i, out))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits, aux = model(x, aux=True)
    assert len(aux) == 2
    heads = model._aux_heads()
    for level, (head, got) in enumerate(zip(heads, aux, strict=True)):
        feature = seen[len(stages) - 2 - level]  # the stages above the last, finest first
        w = head.weight[:, :, 0, 0]
        conv = torch.einsum("kc,nchw->nkhw", w, feature) + head.bias[None, :, None, None]
        want = F.interpolate(conv, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "options"), [
    ("unet", {"base": 4, "depth": 2}),
    ("vgg16_unet", {}),
])
def test_heads_leave_the_main_networks_initial_weights_as_the_seed_makes_them(name, options):
    """So a seed's run with and without deep supervision starts from the same network."""
    torch.manual_seed(7)
    with_heads = build_model(name, 2, 1, deep_supervision=1, **options).state_dict()
    torch.manual_seed(7)
    plain = build_model(name, 2, 1, **options).state_dict()
    assert set(with_heads) - set(plain) == {"aux_heads.0.weight", "aux_heads.0.bias"}
    for key, value in plain.items():
        assert torch.equal(with_heads[key], value), key


def test_inference_is_the_plain_network():
    with_heads = build_model("unet", 2, 1, base=4, depth=2, deep_supervision=1).eval()
    plain = build_model("unet", 2, 1, base=4, depth=2).eval()
    missing, unexpected = plain.load_state_dict(with_heads.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("aux_heads.") for k in unexpected)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(with_heads(x), plain(x))
        torch.testing.assert_close(with_heads(x, aux=True)[0], plain(x))
    with pytest.raises(UnetlabError, match="without auxiliary heads"):
        plain(x, aux=True)


def test_settings_that_cannot_work_are_refused():
    with pytest.raises(UnetlabError, match="at most 1"):
        build_model("unet", 2, 1, base=4, depth=2, deep_supervision=2)
    with pytest.raises(UnetlabError, match="needs same padding"):
        build_model("unet", 2, 1, base=4, depth=2, padding="valid", deep_supervision=1)


def test_training_reaches_the_heads_and_the_run_predicts_like_a_plain_model(
    tmp_path, monkeypatch, one_thread
):
    data = tiny_dataset(tmp_path / "shapes")
    cfg = tiny_config(data, tmp_path / "runs", overrides=("train.epochs=1",),
                      model={"name": "unet",
                             "options": {"base": 4, "depth": 2, "deep_supervision": 1}})
    initial: dict[str, torch.Tensor] = {}
    build = trainer_module.build_network

    def recording_build(*args, **kwargs):
        model = build(*args, **kwargs)
        initial.update({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(trainer_module, "build_network", recording_build)
    result = train(cfg)
    checkpoint = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    state = checkpoint["state_dict"]
    heads = {k: v for k, v in state.items() if k.startswith("aux_heads.")}
    assert set(heads) == {"aux_heads.0.weight", "aux_heads.0.bias"}
    moved = (heads["aux_heads.0.weight"] - initial["aux_heads.0.weight"]).abs().max()
    assert float(moved) > 1e-4  # the trainer's loss sent gradients into the head
    model = model_from_checkpoint(checkpoint)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (1, 3, 32, 32)
