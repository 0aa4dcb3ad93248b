"""Dataset layouts (plain, VOC), the sample dict, weight maps and the loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_dataset
from PIL import Image

from unetlab.data.datasets import open_dataset
from unetlab.data.io import write_mask
from unetlab.data.layouts import PLAIN, VOC, dataset_info
from unetlab.data.loader import make_loader
from unetlab.data.preprocess import Normalization
from unetlab.data.synthetic import make_shapes_dataset
from unetlab.data.transforms import AugmentConfig, build_transform
from unetlab.errors import UnetlabError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=6, n_val=3, size=32)


def _write_voc(folder: Path, ids: dict[str, list[str]], size=(6, 5)) -> Path:
    rng = np.random.default_rng(1)
    (folder / "JPEGImages").mkdir(parents=True)
    (folder / "ImageSets" / "Segmentation").mkdir(parents=True)
    for split, split_ids in ids.items():
        (folder / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(split_ids))
        for sample_id in split_ids:
            image = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / "JPEGImages" / f"{sample_id}.png")
            mask = rng.integers(0, 3, (size[1], size[0]), dtype=np.uint8)
            write_mask(folder / "SegmentationClass" / f"{sample_id}.png", mask)
    return folder


# ---------------------------------------------------------------- layouts


def test_plain_layout_found_with_classes_and_splits(shapes):
    info = dataset_info(shapes)
    assert info.layout == PLAIN
    assert info.class_names == ["background", "circle", "square", "triangle"]
    assert info.num_classes == 4
    assert info.ids("train") == [f"shape_{i:04d}" for i in range(6)]
    assert info.ids("val") == [f"shape_{i:04d}" for i in range(6, 9)]
    assert info.colors[1] == (220, 60, 50)  # the masks' own palette, not the VOC colours


@pytest.mark.parametrize("root_at", ["top", "voc2007", "vocdevkit"])
def test_voc_layout_found_from_any_of_its_folders(tmp_path, root_at):
    voc = _write_voc(tmp_path / "VOCdevkit" / "VOC2007", {"train": ["a", "b"], "val": ["c"]})
    (tmp_path / "classes.txt").write_text("bg\none\ntwo\n")
    root = {"top": tmp_path, "voc2007": voc, "vocdevkit": tmp_path / "VOCdevkit"}[root_at]
    info = dataset_info(root)
    assert info.layout == VOC and info.root == voc
    assert info.ids("train") == ["a", "b"] and info.ids("val") == ["c"]
    assert info.class_names == ["bg", "one", "two"]
    assert info.image_path("a") == voc / "JPEGImages" / "a.png"  # any image ending


def test_without_split_files_all_ids_or_run_split(tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for name in ("x", "y"):
        Image.fromarray(rng.integers(0, 255, (4, 4), dtype=np.uint8)).save(
            tmp_path / "images" / f"{name}.jpg"
        )
        write_mask(tmp_path / "masks" / f"{name}.png", np.zeros((4, 4), np.uint8))
    info = dataset_info(tmp_path)
    assert info.ids("all") == ["x", "y"]
    with pytest.raises(UnetlabError, match="unetlab data split"):
        info.ids("train")


def test_not_a_dataset_says_which_layouts_exist(tmp_path):
    with pytest.raises(UnetlabError, match="not found"):
        dataset_info(tmp_path / "missing")
    with pytest.raises(UnetlabError, match="images/ \\+ masks/"):
        dataset_info(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(UnetlabError, match="masks/"):
        dataset_info(tmp_path)


def test_unknown_split_lists_the_splits_found(shapes):
    with pytest.raises(UnetlabError, match="splits found: train, val"):
        open_dataset(shapes, "test")


# ---------------------------------------------------------------- samples


def test_sample_dict_follows_the_contract(shapes):
    norm = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    dataset = open_dataset(shapes, "val", normalization=norm)
    sample = dataset[1]
    image = np.asarray(Image.open(shapes / "images" / "shape_0007.png"), dtype=np.float32)
    expected = (image / 255.0 - 0.5) / 0.25  # hand-applied normalisation
    assert len(dataset) == 3 and sample["id"] == "shape_0007"
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 32, 32)
    np.testing.assert_allclose(sample["image"].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (32, 32)
    mask = np.asarray(Image.open(shapes / "masks" / "shape_0007.png"))
    np.testing.assert_array_equal(sample["mask"].numpy(), mask)
    assert "weight" not in sample


def test_weight_map_computed_once_per_id_and_warped_with_the_mask(shapes, monkeypatch):
    from unetlab.data import weight_map

    calls = []

    def fake(mask, **options):  # a map we can predict after any warp: it encodes the class
        calls.append(options)
        return mask.astype(np.float32) * 10 + 1

    monkeypatch.setattr(weight_map, "unet_weight_map", fake)
    config = AugmentConfig(vflip=True, rotate90=True, scale_range=(0.6, 1.4), elastic=1.0)
    dataset = open_dataset(
        shapes,
        "train",
        transform=build_transform(config, 40, train=True),  # 40 > 32: padding happens
        weight_map={"w0": 5, "sigma": 3, "object_classes": [1, 2]},
    )
    for _ in range(3):
        for index in range(len(dataset)):
            sample = dataset[index]
            mask, weight = sample["mask"].numpy(), sample["weight"].numpy()
            labelled = mask != 255
            assert (mask == 255).any() or index > 0
            np.testing.assert_array_equal(weight[labelled], mask[labelled] * 10.0 + 1)
            assert (weight[~labelled] == 0).all()
    assert len(calls) == len(dataset)  # cached: once per id, not per epoch
    assert calls[0]["w0"] == 5 and calls[0]["object_classes"] == (1, 2)


def test_precomputed_weight_maps_are_inherited_by_workers(shapes, monkeypatch):
    from unetlab.data import weight_map

    monkeypatch.setattr(weight_map, "unet_weight_map", lambda mask, **o: mask * np.float32(2))
    dataset = open_dataset(shapes, "val", weight_map=True)
    dataset.precompute_weights()

    def fail(mask, **options):
        raise AssertionError("a worker recomputed a weight map")

    monkeypatch.setattr(weight_map, "unet_weight_map", fail)  # forked workers inherit this
    batches = list(make_loader(dataset, batch_size=3, shuffle=False, num_workers=1))
    torch.testing.assert_close(batches[0]["weight"], batches[0]["mask"].float() * 2)


def test_real_weight_map_is_the_losses_function_of_the_raw_mask(shapes):
    from unetlab.losses.weight_map import unet_weight_map

    dataset = open_dataset(shapes, "val", weight_map=True)
    sample = dataset[0]
    mask = np.asarray(Image.open(shapes / "masks" / "shape_0006.png"))
    np.testing.assert_allclose(sample["weight"].numpy(), unet_weight_map(mask), rtol=1e-6)


def test_sixteen_bit_images_are_scaled_by_full_scale(tmp_path):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    pixels = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(pixels).save(tmp_path / "images" / "a.png")
    write_mask(tmp_path / "masks" / "a.png", np.zeros((2, 2), np.uint8))
    flip = build_transform(AugmentConfig(scale_range=(1, 1), brightness=0, contrast=0), 2, True)
    for transform in (None, flip):
        sample = open_dataset(
            tmp_path, "all", normalization=Normalization((0.0,), (1.0,)), transform=transform
        )[0]
        values = sorted(sample["image"].flatten().tolist())
        np.testing.assert_allclose(values, sorted((pixels / 65535.0).flatten()), atol=1e-6)


def test_same_torch_seed_same_augmented_samples(shapes):
    config = AugmentConfig(vflip=True, rotate90=True, elastic=0.5)
    dataset = open_dataset(shapes, "train", transform=build_transform(config, 24, train=True))

    def draw():
        torch.manual_seed(7)
        return [dataset[i]["image"] for i in range(len(dataset))]

    first, second = draw(), draw()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    torch.manual_seed(8)
    assert not all(torch.equal(a, dataset[i]["image"]) for i, a in enumerate(first))


def test_loader_batches_and_reproduces_with_workers(shapes):
    dataset = open_dataset(
        shapes, "train", transform=build_transform(AugmentConfig(), 16, train=True)
    )

    def epoch():
        torch.manual_seed(3)
        loader = make_loader(dataset, batch_size=4, shuffle=True, num_workers=1, drop_last=True)
        return list(loader)

    first, second = epoch(), epoch()
    assert len(first) == 1 and first[0]["image"].shape == (4, 3, 16, 16)
    assert first[0]["mask"].shape == (4, 16, 16) and len(first[0]["id"]) == 4
    assert first[0]["id"] == second[0]["id"]
    assert torch.equal(first[0]["image"], second[0]["image"])


class _NumpyDraws(torch.utils.data.Dataset):
    """Items drawn from numpy's global generator: what seed_worker must make reproducible."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        return int(np.random.randint(0, 2**31))


def test_workers_seed_numpy_from_torch():
    def draws(seed: int) -> list[int]:
        torch.manual_seed(seed)
        loader = make_loader(_NumpyDraws(), batch_size=1, shuffle=False, num_workers=2)
        return [int(batch) for batch in loader]

    first = draws(0)
    assert first == draws(0) and first != draws(1)
    assert first[0] != first[1]  # items 0 and 1 come from workers 0 and 1: different streams


# ---------------------------------------------------------------- real data


def test_camvid_voc_layout_reads_11_classes_and_ignore():
    dataset = open_dataset(shared_dataset("camvid"), "val")
    info = dataset.info
    assert info.layout == VOC and info.num_classes == 11 and info.class_names[0] == "sky"
    assert len(dataset) == 101 and len(info.ids("train")) == 367  # README counts
    sample = dataset[0]
    assert sample["image"].shape == (3, 360, 480) and sample["mask"].shape == (360, 480)
    values = set(sample["mask"].unique().tolist())
    assert values <= set(range(11)) | {255} and 255 in values


def test_isbi2012_plain_layout_is_one_channel():
    dataset = open_dataset(shared_dataset("isbi2012"), "train")
    assert len(dataset) == 20 and dataset.info.class_names == ["cell", "membrane"]
    sample = dataset[0]
    assert sample["image"].shape == (1, 512, 512)
    assert set(sample["mask"].unique().tolist()) == {0, 1}
