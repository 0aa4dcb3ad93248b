"""Validation on other sequences: groups read from ids, grouped splits, split lists given as paths,
and the planner's warning when val shares sequences with training."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from unetlab.cli.main import cli
from unetlab.data.convert import make_splits
from unetlab.data.groups import group_ids, group_of, shared_groups
from unetlab.data.layouts import dataset_info
from unetlab.data.validate import check_dataset
from unetlab.errors import UnetlabError
from unetlab.plan.fingerprint import fingerprint_dataset

SEQUENCES = {"0001TP": 6, "0006R0": 10, "0016E5": 20}


def _ids(sequences: dict[str, int]) -> list[str]:
    return [f"{seq}_{frame:05d}" for seq, n in sequences.items() for frame in range(0, 30 * n, 30)]


def _plain(root: Path, ids: list[str], size: int = 8) -> Path:
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for sample_id in ids:
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(
            root / "images" / f"{sample_id}.png"
        )
        mask = np.zeros((size, size), np.uint8)
        mask[: size // 2] = 1
        Image.fromarray(mask).save(root / "masks" / f"{sample_id}.png")
    (root / "classes.txt").write_text("background\nthing\n")
    return root


@pytest.mark.parametrize(
    ("sample_id", "group"),
    [
        ("0016E5_07959", "0016E5"),
        ("Seq05VD_f00330", "Seq05VD_f"),
        ("stack2-slice014", "stack2-slice"),
        ("horse001", "horse"),
        ("42", "42"),  # nothing but a number: its own group
    ],
)
def test_auto_group_is_the_id_without_its_trailing_number(sample_id: str, group: str) -> None:
    assert group_of(sample_id) == group


def test_a_pattern_group_is_its_first_group_or_match() -> None:
    assert group_of("patientA_slice3", r"^([^_]+)_") == "patientA"
    assert group_of("patientA_slice3", r"^[^_]+") == "patientA"
    assert group_of("nomatch", r"^x(\d)") == "nomatch"
    with pytest.raises(UnetlabError, match="group pattern"):
        group_of("a", "(")


def test_shared_groups_needs_two_groups_to_say_anything() -> None:
    assert shared_groups(["a_1", "b_1"], ["a_2"]) == ["a"]
    assert shared_groups(["a_1", "b_1"], ["c_2"]) == []
    assert shared_groups(["img_1", "img_2"], ["img_3"]) == []  # one group over everything


def test_grouped_split_keeps_sequences_whole_and_is_closest_to_the_share(tmp_path: Path) -> None:
    ids = _ids(SEQUENCES)
    root = _plain(tmp_path / "d", ids)
    sizes = {seq: n for seq, n in SEQUENCES.items()}
    for seed in range(6):
        splits = make_splits(root, val_fraction=0.25, seed=seed, group="auto",
                             out_dir=tmp_path / f"lists{seed}")
        train_groups = set(group_ids(splits["train"]))
        val_groups = set(group_ids(splits["val"]))
        assert not train_groups & val_groups
        assert sorted(splits["train"] + splits["val"]) == sorted(ids)
        # by brute force: no subset of sequences that leaves one for training is closer to 25%
        target = 0.25 * len(ids)
        best = min(
            abs(sum(sizes[s] for s in subset) - target)
            for r in range(1, len(sizes))
            for subset in itertools.combinations(sizes, r)
        )
        # a greedy pass over shuffled sequences: within one sequence of the best
        assert abs(len(splits["val"]) - target) <= best + max(sizes.values())
        assert len(val_groups) >= 1
    assert not (root / "splits").exists()  # --out: the dataset is left alone


def test_grouped_split_picks_the_group_closest_to_the_share(tmp_path: Path) -> None:
    # three sequences of 6, 10 and 20 frames, 25% of 36 = 9: the 10-frame one, whatever the seed
    root = _plain(tmp_path / "d", _ids(SEQUENCES))
    chosen = {tuple(group_ids(make_splits(root, 0.25, seed, group="auto",
                                          out_dir=tmp_path / str(seed))["val"]))
              for seed in range(8)}
    assert chosen <= {("0006R0",), ("0001TP",)}  # |10-9| = 1, |6-9| = 3; never the 20
    assert ("0006R0",) in chosen


def test_grouped_folds_hold_each_sequence_out_once(tmp_path: Path) -> None:
    root = _plain(tmp_path / "d", _ids({"a": 3, "b": 4, "c": 5, "d": 6}))
    splits = make_splits(root, folds=2, group="auto", out_dir=tmp_path / "folds")
    held = [set(group_ids(splits[f"fold{i}_val"])) for i in range(2)]
    assert held[0] | held[1] == {"a", "b", "c", "d"} and not held[0] & held[1]
    for i in range(2):
        assert not set(group_ids(splits[f"fold{i}_train"])) & held[i]


def test_one_group_over_everything_is_refused_with_a_hint(tmp_path: Path) -> None:
    root = _plain(tmp_path / "d", [f"img_{i:03d}" for i in range(6)])
    with pytest.raises(UnetlabError, match="one group") as error:
        make_splits(root, group="auto")
    assert "--group" in str(error.value)


def test_a_split_given_as_a_path_is_read_and_checked(tmp_path: Path) -> None:
    ids = _ids({"a": 3, "b": 2})
    root = _plain(tmp_path / "d", ids)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (lists / "val.txt").write_text("\n".join(ids[3:]) + "\n")
    info = dataset_info(root)
    assert info.ids(str(lists / "val.txt")) == ids[3:]
    report = check_dataset(root, splits=(str(lists / "train.txt"), str(lists / "val.txt")))
    assert report.splits[str(lists / "train.txt")] == ids[:3]
    with pytest.raises(UnetlabError, match="split file not found"):
        dataset_info(root).ids(str(lists / "missing.txt"))
    (lists / "bad.txt").write_text("a_00000\nnot_there\n")
    with pytest.raises(UnetlabError, match="not_there"):
        check_dataset(root, splits=(str(lists / "bad.txt"),))


def test_the_plan_warns_when_val_shares_sequences_and_not_after_a_grouped_split(
    tmp_path: Path, monkeypatch
) -> None:
    from unetlab.engine.probe import Candidate, Timing
    from unetlab.plan.planner import PlanOptions, make_plan

    monkeypatch.setenv("UNETLAB_CACHE", str(tmp_path / "cache"))
    ids = _ids({"a": 4, "b": 4, "c": 4})
    root = _plain(tmp_path / "d", ids, size=32)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(ids[::2]) + "\n")  # every other frame
    (root / "splits" / "val.txt").write_text("\n".join(ids[1::2]) + "\n")
    shared = fingerprint_dataset(root)
    assert shared.shared_groups == ("a", "b", "c")
    lists = tmp_path / "lists"
    make_splits(root, val_fraction=0.3, group="auto", out_dir=lists)
    apart = fingerprint_dataset(root, str(lists / "train.txt"), str(lists / "val.txt"))
    assert apart.shared_groups == ()
    assert apart.val_split == str((lists / "val.txt").resolve())

    candidate = Candidate(base=16, depth=2, patch=32, batch=2, precision="fp32",
                          channels_last=False)
    timing = Timing(candidate, step_seconds=0.01, forward_seconds_per_mpixel=0.1)
    options = PlanOptions(budget_seconds=120, device="cpu", cores=2)
    warned = make_plan(shared, [timing], options)
    assert "WARNING" in warned.reasons["data.val_split"]
    assert "--group auto" in warned.reasons["data.val_split"]
    assert "val_split" not in warned.config["data"]
    planned = make_plan(apart, [timing], options)
    assert "data.val_split" not in planned.reasons
    assert planned.config["data"]["val_split"] == str((lists / "val.txt").resolve())
    assert planned.config["data"]["train_split"] == str((lists / "train.txt").resolve())


def test_cli_split_by_sequence_into_a_folder(tmp_path: Path) -> None:
    root = _plain(tmp_path / "d", _ids(SEQUENCES))
    result = CliRunner().invoke(
        cli, ["data", "split", str(root), "--group", "auto", "--val", "0.25", "--out",
              str(tmp_path / "lists")]
    )
    assert result.exit_code == 0, result.output
    assert "(1 group)" in result.output and "(2 groups)" in result.output
    val = (tmp_path / "lists" / "val.txt").read_text().split()
    train = (tmp_path / "lists" / "train.txt").read_text().split()
    assert not set(group_ids(val)) & set(group_ids(train))


# ---------------------------------------------------------------- the automatic split


def test_the_automatic_split_holds_out_the_sequence_closest_to_a_tenth(tmp_path: Path) -> None:
    """36 frames in sequences of 6, 10 and 20: a tenth is 3.6, and whatever the shuffled order,
    only the 6-frame sequence brings the held-out count closer to it than nothing does."""
    ids = _ids(SEQUENCES)
    root = _plain(tmp_path / "d", ids)
    info = dataset_info(root)
    assert info.ids("auto-val") == [i for i in ids if i.startswith("0001TP")]
    assert info.ids("auto-train") == sorted(i for i in ids if not i.startswith("0001TP"))
    assert info.splits == {}  # computed, not written: the dataset folder is the user's
    assert not (root / "splits").exists()


def test_the_automatic_split_of_unsequenced_names_is_a_seeded_draw_of_images(
    tmp_path: Path,
) -> None:
    import random

    ids = [f"img{k:02d}" for k in range(20)]  # one 'sequence' ("img"): nothing to keep whole
    root = _plain(tmp_path / "d", ids)
    (root / "images" / "unlabelled.png").write_bytes((root / "images" / "img00.png").read_bytes())
    reference = sorted(ids)
    random.Random(0).shuffle(reference)  # the documented rule: seed 0, 10% = 2 images
    info = dataset_info(root)
    assert info.ids("auto-val") == sorted(reference[:2])
    assert info.ids("auto-train") == sorted(reference[2:])
    assert dataset_info(root).ids("auto-val") == info.ids("auto-val")  # the same every time


def test_the_automatic_split_refuses_a_single_image_and_is_checked_like_a_list(
    tmp_path: Path,
) -> None:
    with pytest.raises(UnetlabError, match="too few to hold one out"):
        dataset_info(_plain(tmp_path / "one", ["only"])).ids("auto-val")
    root = _plain(tmp_path / "d", _ids(SEQUENCES))
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("0001TP_00000\n")  # lists exist: still usable
    report = check_dataset(root, splits=("auto-train", "auto-val"), raise_on_problems=False)
    assert not report.problems
    assert sorted(report.splits) == ["auto-train", "auto-val"]
    with pytest.raises(UnetlabError, match=r"--set data\.train_split=auto-train"):
        dataset_info(_plain(tmp_path / "bare", ["a1", "b1"])).ids("train")
