"""The planner: fingerprints of hand-built datasets, choices as a pure function, round trips.

Fingerprint values are checked against numbers computed by hand from how the test data was
drawn (sizes, pixel shares, band widths, object gaps, intensities). Planner rules get
hand-made fingerprints and timings: no clock is read in these tests.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from unetlab.engine.probe import Candidate, Timing
from unetlab.errors import UnetlabError
from unetlab.plan import (
    Fingerprint,
    PlanOptions,
    fingerprint_dataset,
    make_plan,
    parse_budget,
    plan_to_yaml,
    write_plan,
)
from unetlab.plan.fingerprint import ClassStats, structure_width, touching_objects
from unetlab.plan.planner import MIN_STEPS, MIN_STRUCTURE, choose_precision, choose_working_scale

# ---------------------------------------------------------------- fingerprint


def band_width_by_hand(w: int) -> float:
    """4 * mean distance - 2 for a band of odd width w: distances 1, 2, .., (w+1)/2, .., 1."""
    distances = [min(i + 1, w - i) for i in range(w)]
    return 4 * sum(distances) / w - 2


@pytest.mark.parametrize("w", [3, 5, 9, 21])
def test_structure_width_of_bands(w: int) -> None:
    region = np.zeros((64, 40), bool)
    region[20 : 20 + w] = True
    assert structure_width(region) == pytest.approx(band_width_by_hand(w))
    assert abs(structure_width(region) - w) <= 0.5  # what the number means


def test_structure_width_empty_is_none() -> None:
    assert structure_width(np.zeros((5, 5), bool)) is None


def test_touching_objects_by_gap() -> None:
    region = np.zeros((40, 80), bool)
    region[5:15, 5:15] = True  # A
    region[5:15, 19:29] = True  # B: 4 px gap from A (< 6): touching
    region[5:15, 60:70] = True  # C: 31 px from B: alone
    assert touching_objects(region, gap=6) == (3, 2)
    assert touching_objects(region, gap=3) == (3, 0)  # a 4 px gap is more than 3


def write_dataset(root: Path, sizes: list[tuple[int, int]], band: int, values: list[int]) -> None:
    """Plain layout: image i is constant ``values[i]`` (gray), mask = class 1 on rows 10..10+band
    (full width), class 0 elsewhere; all but the last image are train, the last is val."""
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True)
    ids = [f"s{i}" for i in range(len(sizes))]
    for sample_id, (h, w), value in zip(ids, sizes, values, strict=True):
        image = np.full((h, w), value, np.uint8)
        Image.fromarray(image).save(root / "images" / f"{sample_id}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[10 : 10 + band] = 1
        Image.fromarray(mask).save(root / "masks" / f"{sample_id}.png")
    (root / "splits" / "train.txt").write_text("\n".join(ids[:-1]) + "\n")
    (root / "splits" / "val.txt").write_text(ids[-1] + "\n")
    (root / "classes.txt").write_text("background\nband\n")


def test_fingerprint_of_a_hand_built_dataset(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("UNETLAB_CACHE", str(tmp_path / "cache"))
    sizes = [(64, 96), (64, 96), (80, 100), (48, 50)]
    values = [51, 102, 204, 0]
    write_dataset(tmp_path / "d", sizes, band=5, values=values)
    fp = fingerprint_dataset(tmp_path / "d")
    train = sizes[:3]
    assert (fp.num_images, fp.num_val_images, fp.channels, fp.bit_depth) == (3, 1, 1, 8)
    assert fp.median_size == (64, 96) and fp.min_size == (64, 96) and fp.max_size == (80, 100)
    assert fp.val_pixels == 48 * 50
    band_pixels = sum(5 * w for _, w in train)
    all_pixels = sum(h * w for h, w in train)
    assert fp.classes[1].pixel_share == pytest.approx(band_pixels / all_pixels)
    assert fp.classes[1].name == "band"
    assert fp.classes[1].width == pytest.approx(band_width_by_hand(5))
    # class 0: two regions per image (above and below the band), 5 px apart: all touching
    assert fp.classes[0].objects_per_image == pytest.approx(2.0)
    assert fp.classes[0].touching == pytest.approx(1.0)
    assert fp.classes[1].touching == 0.0
    pixels = np.concatenate(
        [np.full(h * w, v / 255) for (h, w), v in zip(train, values[:3], strict=True)]
    )
    assert fp.mean[0] == pytest.approx(pixels.mean())
    assert fp.std[0] == pytest.approx(pixels.std(), rel=1e-6)


def test_fingerprint_is_cached_and_keyed_on_the_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("UNETLAB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "d"
    write_dataset(root, [(64, 64)] * 3, band=3, values=[10, 20, 30])
    first = fingerprint_dataset(root)
    assert len(list((tmp_path / "cache" / "fingerprints").glob("*.json"))) == 1
    assert fingerprint_dataset(root) == first  # from the cache
    assert sorted(p.name for p in root.iterdir()) == ["classes.txt", "images", "masks", "splits"]
    mask = np.zeros((64, 64), np.uint8)
    mask[10:19] = 1  # a wider band in one training mask: the cache must not answer
    Image.fromarray(mask).save(root / "masks" / "s0.png")
    changed = fingerprint_dataset(root)
    assert changed.classes[1].pixel_share > first.classes[1].pixel_share


def test_fingerprint_round_trips_as_dict() -> None:
    fp = make_fingerprint()
    assert Fingerprint.from_dict(fp.to_dict()) == fp


# ---------------------------------------------------------------- the planner (pure)


def make_fingerprint(**changes) -> Fingerprint:
    values = dict(
        root="/data/em", split="train", num_images=20, num_val_images=4, channels=1,
        bit_depth=8, median_size=(512, 512), min_size=(512, 512), max_size=(512, 512),
        mean=(0.5,), std=(0.17,), ignored_share=0.0, val_pixels=4 * 512 * 512,
        classes=(ClassStats("cell", 0.77, 45.0, 117.0, 0.99),
                 ClassStats("membrane", 0.23, 8.5, 3.0, 0.6)),
    )
    values.update(changes)
    return Fingerprint(**values)


def timing(base: int, step: float, precision: str = "bf16", cl: bool = True, patch: int = 256,
           depth: int = 4, forward: float = 0.5) -> Timing:
    return Timing(Candidate(base, depth, patch, 4, precision, cl), step, forward)


def standard_timings(bf16_16: float = 0.3) -> list[Timing]:
    return [
        timing(16, 1.0, "fp32", False), timing(16, 0.6, "fp32", True), timing(16, bf16_16),
        timing(24, 0.5), timing(32, 0.8),
    ]


def test_plan_picks_the_fastest_precision_and_the_widest_width_that_fits() -> None:
    plan = make_plan(make_fingerprint(), standard_timings(), PlanOptions(budget_seconds=1200))
    cfg = plan.config
    assert (cfg["train"]["amp"], cfg["train"]["channels_last"]) == ("bf16", True)
    # available for steps: 1200 s less validation (12 x 1.5 x 0.5 s/MP x 1.05 MP = 9.4 s each)
    budget = 1200 - 12 * 1.5 * 0.5 * (4 * 512 * 512 / 1e6)
    assert budget / 0.5 >= MIN_STEPS > budget / 0.8  # base 24 fits, base 32 does not
    assert cfg["model"]["options"]["base"] == 24
    assert plan.predicted_steps == int(budget / 0.5)
    assert cfg["data"]["patch_size"] == 256 and cfg["model"]["options"]["depth"] == 4
    assert "base 24: 0.500 s" in plan.reasons["model.options.base"]


def test_reduced_precision_needs_a_real_margin() -> None:
    # bf16 NHWC 0.57 s vs fp32 NHWC 0.6 s: 5% faster, under the 10% margin: fp32 NHWC
    chosen, reason = choose_precision(standard_timings(bf16_16=0.57))
    assert (chosen.candidate.precision, chosen.candidate.channels_last) == ("fp32", True)
    assert "bf16 NHWC 0.570 s" in reason
    chosen, _ = choose_precision(standard_timings(bf16_16=0.53))  # 12% faster: bf16
    assert chosen.candidate.precision == "bf16"


def test_tiny_budgets_get_a_narrow_network() -> None:
    plan = make_plan(make_fingerprint(), standard_timings(), PlanOptions(budget_seconds=60))
    assert plan.config["model"]["options"]["base"] == 8


def test_time_limit_is_the_budget_less_planning() -> None:
    plan = make_plan(make_fingerprint(), standard_timings(),
                     PlanOptions(budget_seconds=1200, seconds_spent=30))
    assert plan.config["train"]["time_limit_minutes"] == pytest.approx(1170 / 60, abs=1e-3)
    assert plan.config["train"]["epochs"] >= 10_000  # the clock ends the run
    with pytest.raises(UnetlabError, match="no time is left to train"):
        make_plan(make_fingerprint(), standard_timings(),
                  PlanOptions(budget_seconds=60, seconds_spent=59.5))


def test_orientation_rules() -> None:
    gray = make_plan(make_fingerprint(), standard_timings(), PlanOptions(budget_seconds=600))
    aug = gray.config["data"]["augment"]
    assert aug["rotate90"] and aug["vflip"] and aug["scale_range"] == [1.0, 1.0]
    rgb_fp = make_fingerprint(channels=3, mean=(0.5,) * 3, std=(0.2,) * 3)
    rgb = make_plan(rgb_fp, standard_timings(), PlanOptions(budget_seconds=600))
    aug = rgb.config["data"]["augment"]
    assert not aug["rotate90"] and not aug["vflip"] and aug["hflip"]
    assert aug["scale_range"] == [0.75, 1.25]
    forced = make_plan(rgb_fp, standard_timings(),
                       PlanOptions(budget_seconds=600, orientation="free"))
    assert forced.config["data"]["augment"]["rotate90"]
    assert "as asked" in forced.reasons["data.augment.rotate90"]


def test_loss_rules() -> None:
    lines = make_plan(make_fingerprint(), standard_timings(), PlanOptions(budget_seconds=600))
    assert lines.config["loss"] == {"name": "ce"}  # membrane 8.5 px wide: thin lines
    assert "8.5 px" in lines.reasons["loss.name"]
    regions = make_fingerprint(
        classes=(ClassStats("bg", 0.75, 300, 2, 0.4), ClassStats("horse", 0.25, 100, 1, 0.2))
    )
    plan = make_plan(regions, standard_timings(), PlanOptions(budget_seconds=600))
    assert plan.config["loss"] == {"name": "ce_dice"} and "100 px" in plan.reasons["loss.name"]
    for width, loss in ((MIN_STRUCTURE, "ce_dice"), (MIN_STRUCTURE - 0.1, "ce")):
        at_the_line = make_fingerprint(
            classes=(ClassStats("bg", 0.75, 300, 2, 0.4), ClassStats("fg", 0.25, width, 1, 0.2))
        )
        plan = make_plan(at_the_line, standard_timings(), PlanOptions(budget_seconds=600))
        assert plan.config["loss"]["name"] == loss
    rare = make_fingerprint(
        classes=(ClassStats("bg", 0.95, 50, 1, 0), ClassStats("fg", 0.05, 5, 3, 0))
    )
    plan = make_plan(rare, standard_timings(), PlanOptions(budget_seconds=600))
    assert plan.config["loss"]["name"] == "ce_dice" and "5.0%" in plan.reasons["loss.name"]
    many = make_fingerprint(classes=(
        ClassStats("road", 0.60, 50, 1, 0), ClassStats("car", 0.39, 10, 3, 0),
        ClassStats("pole", 0.01, 2, 9, 0),
    ))
    plan = make_plan(many, standard_timings(), PlanOptions(budget_seconds=600))
    assert plan.config["loss"]["class_weights"] == "auto"
    assert "pole" in plan.reasons["loss.class_weights"]


@pytest.mark.parametrize(
    ("short", "patch", "depth"),
    # poolings until the bottleneck is at most 16 px: 256/16, 160/10, 128/16, 96/12, 32/8
    [(512, 256, 4), (170, 160, 4), (128, 128, 3), (100, 96, 3), (40, 32, 2)],
)
def test_patch_and_depth_follow_the_image_size(short: int, patch: int, depth: int) -> None:
    fp = make_fingerprint(median_size=(short, short + 50))
    plan = make_plan(fp, standard_timings(), PlanOptions(budget_seconds=600))
    assert plan.config["data"]["patch_size"] == patch
    assert plan.config["model"]["options"]["depth"] == depth
    assert patch % 2 ** depth == 0


def photo_fingerprint(median_size: tuple[int, int], thinnest: float) -> Fingerprint:
    return make_fingerprint(
        channels=3, mean=(0.5,) * 3, std=(0.27,) * 3, median_size=median_size,
        val_pixels=52 * median_size[0] * median_size[1],
        classes=(ClassStats("background", 0.75, 306.0, 1.8, 0.4),
                 ClassStats("horse", 0.25, thinnest, 1.1, 0.2)),
    )


def test_working_scale_fits_a_median_photograph_into_one_patch() -> None:
    fp = photo_fingerprint((375, 498), thinnest=101.0)  # weizmann_horse's fingerprint
    plan = make_plan(fp, standard_timings(), PlanOptions(budget_seconds=1200))
    data = plan.config["data"]
    assert data["working_scale"] == 0.51  # 256 / 498 = 0.514, to two decimals
    # at 0.51 the median image is 191 x 254: the patch is its short side in 32 px steps
    assert (data["patch_size"], plan.config["model"]["options"]["depth"]) == (160, 4)
    assert "52 px" in plan.reasons["data.working_scale"]  # 101 px horses keep 101 x 0.51
    # validation is timed at the working scale: 52 images of 191 x 254 at 0.5 s/MP, x 1.5
    per_validation = 1.5 * 0.5 * 52 * 375 * 498 * 0.51**2 / 1e6
    assert f"about {per_validation:.0f} s each" in plan.reasons["data.repeat"]
    cuda = choose_working_scale(fp, "cuda")  # a 512 px patch holds the whole image
    assert cuda[0] == 1.0 and "fits one 512 px patch" in cuda[1]


@pytest.mark.parametrize(
    ("median_size", "thinnest", "scale"),
    [
        ((750, 1000), 40.0, 0.4),  # 256/1000 would leave 10 px: held at 16 px / 40 px
        ((750, 1000), 4.0, 1.0),  # thin structures (poles, membranes): full size
        ((360, 480), 3.6, 1.0),  # camvid: 3.6 px poles
        ((200, 250), 101.0, 1.0),  # fits a patch already: never enlarged
        ((3000, 4000), 200.0, 0.08),  # large photographs of large objects
    ],
)
def test_working_scale_keeps_the_thinnest_structures(median_size, thinnest, scale) -> None:
    chosen, reason = choose_working_scale(photo_fingerprint(median_size, thinnest), "cpu")
    assert chosen == scale
    assert thinnest * chosen >= MIN_STRUCTURE or chosen == 1.0
    assert reason.startswith("full size" if scale == 1.0 else f"{scale:g}:")


def test_working_scale_of_microscopy_and_absent_classes() -> None:
    em = make_fingerprint(median_size=(1024, 1024))  # membranes 8.5 px: never shrunk
    assert choose_working_scale(em, "cpu")[0] == 1.0
    absent = make_fingerprint(
        median_size=(1024, 1024), classes=(ClassStats("a", 1.0, None, 0, 0),)
    )
    assert choose_working_scale(absent, "cpu")[0] == 1.0


def test_validation_cadence_stays_within_its_share() -> None:
    # 101 val images of 480x360 at 2 s/MP: 52 s per validation; 8% of 20 min is 96 s: 2 validations
    fp = make_fingerprint(num_val_images=101, val_pixels=101 * 480 * 360, channels=3,
                          mean=(0.4,) * 3, std=(0.3,) * 3, median_size=(360, 480))
    plan = make_plan(fp, [timing(16, 0.3, forward=2.0), timing(16, 1.0, "fp32", False)],
                     PlanOptions(budget_seconds=1200))
    assert "about 2 validations" in plan.reasons["data.repeat"]


# ---------------------------------------------------------------- plan files


def test_plan_round_trips_as_a_config(tmp_path: Path) -> None:
    plan = make_plan(make_fingerprint(root=str(tmp_path)), standard_timings(),
                     PlanOptions(budget_seconds=1200))
    text = plan_to_yaml(plan)
    assert yaml.safe_load(text) == plan.config
    lines = text.splitlines()
    for field, reason in plan.reasons.items():
        leaf = field.split(".")[-1] + ":"
        assert any(line.strip().startswith(leaf) and reason in line for line in lines), field
    path = write_plan(plan, tmp_path / "plan.yaml")
    from unetlab.engine.config import load_config

    assert load_config(path) == plan.run_config()
    with pytest.raises(UnetlabError, match="exists"):
        write_plan(plan, path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20m", 1200), ("1.5h", 5400), ("90s", 90), ("20", 1200), (5, 300), ("2min", 120)],
)
def test_parse_budget(text, seconds) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "0"])
def test_parse_budget_refuses(text) -> None:
    with pytest.raises(UnetlabError):
        parse_budget(text)


def test_candidates_round_trip() -> None:
    t = timing(24, 0.5)
    assert Timing.from_dict(t.to_dict()) == t
    assert dataclasses.asdict(t.candidate)["base"] == 24
    assert math.isfinite(t.forward_seconds_per_mpixel)


# ---------------------------------------------------------------- the commands, end to end


def test_plan_and_train_with_a_budget_from_the_command_line(tmp_path: Path, monkeypatch) -> None:
    """``unetlab plan`` writes a plan that trains; ``train --data --budget`` plans and trains,
    keeping plan.yaml (with its reasons) in the run folder."""
    from unetlab.artifacts.checkpoint import load_checkpoint
    from unetlab.cli.main import main
    from unetlab.data.synthetic import make_shapes_dataset

    monkeypatch.setenv("UNETLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    data = make_shapes_dataset(tmp_path / "shapes", n_train=8, n_val=2, size=32, num_classes=2)
    assert main(["plan", str(data), "--budget", "0.1m", "--out", "p.yaml"]) == 0
    planned = yaml.safe_load((tmp_path / "p.yaml").read_text())
    assert planned["train"]["time_limit_minutes"] == 0.1  # trained later: the whole budget
    assert planned["data"]["patch_size"] == 32 and planned["model"]["options"]["depth"] == 2
    assert main(["plan", str(data), "--out", "p.yaml"]) == 2  # never replaces a file
    assert main(["train", "p.yaml", "--name", "from-plan"]) == 0
    assert (tmp_path / "runs" / "from-plan" / "checkpoints" / "last.pt").is_file()

    assert main(["train", "--data", str(data), "--budget", "0.1m", "--name", "budget"]) == 0
    run = tmp_path / "runs" / "budget"
    plan_text = (run / "plan.yaml").read_text()
    assert "# the data:" in plan_text and "fastest measured step" in plan_text
    config = load_checkpoint(run / "checkpoints" / "last.pt")["config"]
    assert config["train"]["time_limit_minutes"] <= 0.1
    assert config["model"]["options"] == yaml.safe_load(plan_text)["model"]["options"]
    assert main(["train", "--budget", "1m"]) == 2  # planning needs a dataset


def test_a_dataset_without_split_lists_is_planned_trained_and_evaluated_on_the_automatic_split(
    tmp_path: Path, monkeypatch
) -> None:
    """No splits/ folder: ``train --data --budget`` holds out the automatic split instead of
    stopping at 'no split files', says so in plan.yaml, writes nothing into the dataset, and
    ``evaluate RUN`` scores the same held-out images."""
    import random
    import shutil

    from unetlab.cli.main import main
    from unetlab.data.synthetic import make_shapes_dataset

    monkeypatch.setenv("UNETLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    data = make_shapes_dataset(tmp_path / "shapes", n_train=9, n_val=1, size=32, num_classes=2)
    shutil.rmtree(data / "splits")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    assert main(["train", "--data", str(data), "--budget", "0.1m", "--name", "auto"]) == 0
    run = tmp_path / "runs" / "auto"
    plan = yaml.safe_load((run / "plan.yaml").read_text())
    assert (plan["data"]["train_split"], plan["data"]["val_split"]) == ("auto-train", "auto-val")
    assert "1 of 10 labelled images" in (run / "plan.yaml").read_text()
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    assert main(["evaluate", str(run), "--data", str(data), "--out", str(tmp_path / "eval")]) == 0
    labelled = sorted(path.stem for path in (data / "masks").iterdir())
    random.Random(0).shuffle(labelled)  # the documented rule: one sequence ("shape"), seed 0
    rows = (tmp_path / "eval" / "per_image.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in rows] == labelled[:1]  # 10% of 10: that one image
