"""``unetlab data ...``: check, split and convert datasets (thin over :mod:`unetlab.data`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from unetlab.cli.options import F, overwrite_option

_overwrite_option = overwrite_option("Replace output files that exist already.")
"""``--overwrite`` of the data commands (``fix-binary`` without ``--out`` rewrites in place)."""


def _share_option(flag: str, name: str, default: float, text: str) -> Callable[[F], F]:
    """A share of the images that ``data split`` holds out (0 <= share < 1)."""
    return click.option(
        flag, name, type=click.FloatRange(0.0, 1.0, max_open=True), default=default,
        show_default=True, help=text,
    )  # fmt: skip


@click.group()
def data() -> None:
    """Check, split and convert datasets; make the synthetic demo data."""


@data.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--classes",
    "num_classes",
    type=click.IntRange(min=1),
    default=None,
    help="Number of classes (default: classes.txt, else the largest mask value + 1).",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    default=("train", "val"),
    show_default=True,
    help="Split(s) to check; repeat the option for several.",
)
def check(dataset: Path, num_classes: int | None, splits: tuple[str, ...]) -> None:
    """Read every image and mask of DATASET and report counts, sizes, class frequencies and
    every problem (exit code 2 when there is one)."""
    from unetlab.data.validate import check_dataset, format_report

    report = check_dataset(dataset, num_classes, splits, raise_on_problems=False)
    click.echo(format_report(report, list_problems=False))
    report.raise_if_problems(max_listed=max(20, len(report.problems)))


@data.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@_share_option(
    "--val", "val_fraction", 0.1,
    "Share of the labelled images held out for validation (without --folds).",
)
@_share_option(
    "--test", "test_fraction", 0.0,
    "Share held out for testing first (test.txt), kept out of train, val and folds.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="K-fold lists instead of one val share: fold<i>_train.txt and fold<i>_val.txt "
    "(train.txt and val.txt are fold 0).",
)
@click.option(
    "--group",
    default=None,
    metavar="auto|REGEX",
    help="Keep groups whole (video sequences, stacks), so val holds sequences train never saw: "
    "'auto' reads the group as the id without its trailing number (0016E5_07959 -> 0016E5), "
    "a regular expression as its first group.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the lists here instead of into the dataset (use them with "
    "--set data.val_split=OUT/val.txt).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Shuffle seed.")
@click.option("--force", is_flag=True, help="Replace existing split files.")
def split(
    dataset: Path,
    val_fraction: float,
    test_fraction: float,
    folds: int,
    group: str | None,
    out_dir: Path | None,
    seed: int,
    force: bool,
) -> None:
    """Write train/val (and test, or k-fold) lists of DATASET from the images that have a mask.

    \b
    Examples:
      unetlab data split DATASET --val 0.2 --seed 1
      unetlab data split DATASET --test 0.1 --folds 5
      unetlab data split DATASET --group auto --val 0.2 --out lists/
      unetlab train ... --set data.train_split=fold1_train --set data.val_split=fold1_val
    """
    from unetlab.data.convert import make_splits
    from unetlab.data.groups import group_ids
    from unetlab.data.layouts import dataset_info

    before = set(dataset_info(dataset).splits)
    splits = make_splits(
        dataset, val_fraction, seed, overwrite=force, test_fraction=test_fraction, folds=folds,
        group=group, out_dir=out_dir,
    )
    info = dataset_info(dataset)
    for name, ids in splits.items():
        where = out_dir / f"{name}.txt" if out_dir else info.split_file(name)
        count = len(group_ids(ids, group)) if group else 0
        sequences = f" ({count} group{'' if count == 1 else 's'})" if group else ""
        click.echo(f"{where}: {len(ids)} ids{sequences}")
    unlabelled = len(set(info.images) - set(info.masks))
    if unlabelled:
        click.echo(f"{unlabelled} image(s) without a mask were left out")
    stale = sorted(before - set(splits)) if out_dir is None else []
    if stale:
        click.echo(
            f"note: older split file(s) left as they were: {', '.join(stale)} (they may "
            "overlap the new lists; delete them if they belong to the old split)"
        )


@data.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--classes",
    "classes",
    required=True,
    help="Class names in index order, background first: _background_,cat,dog (or a file "
    "with one name per line).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    required=True,
    help="Dataset folder to write (images/, masks/, classes.txt).",
)
@_overwrite_option
def labelme(source: Path, classes: str, out: Path, overwrite: bool) -> None:
    """Convert labelme JSON files (SOURCE: a .json file or a folder of them) to index masks.

    --classes takes the names (background first) or a classes file, one name per line."""
    from unetlab.data.labelme import class_names_from, labelme_to_dataset

    notes: list[str] = []
    written = labelme_to_dataset(source, class_names_from(classes), out, overwrite, notes)
    for note in notes:
        click.echo(f"note: {note}")
    click.echo(
        f"wrote {len(written)} mask(s) to {out / 'masks'} and their images to "
        f"{out / 'images'}; next: unetlab data split {out}"
    )


@data.command("fix-binary")
@click.argument("mask_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the fixed masks here instead of in place.",
)
@_overwrite_option
def fix_binary(mask_dir: Path, out: Path | None, overwrite: bool) -> None:
    """Rewrite 0/255 masks in MASK_DIR as 0/1 (255 means 'ignore' to unetlab).

    Only masks that are 0/255 are rewritten; 0/255 masks of a dataset where 255 is the ignore
    label, and masks that share an id with another file, are left unchanged and listed."""
    from unetlab.data.convert import fix_binary_masks

    report = fix_binary_masks(mask_dir, out, overwrite)
    click.echo(f"converted {len(report.converted)} 0/255 mask(s) to 0/1 in {out or mask_dir}")
    if report.unchanged:
        click.echo(f"{len(report.unchanged)} mask(s) were 0/1 already")
    for path, reason in report.skipped.items():
        click.echo(f"skipped {path}: {reason}")


def _colour(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise click.BadParameter(
            f"'{text}' is not R,G,B (0..255 each)", param_hint="--ignore-color"
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


@data.command("rgb-to-index")
@click.argument("masks", type=click.Path(path_type=Path))
@click.option(
    "--palette",
    required=True,
    help="'voc' (the VOC colour map), a palette PNG, or a text file of 'NAME R G B' lines in "
    "class order (e.g. classes.txt).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the index masks (not the folder of the colour masks).",
)
@click.option("--ignore-color", metavar="R,G,B", help="A colour to write as 255 (ignored).")
@_overwrite_option
def rgb_to_index(
    masks: Path, palette: str, out: Path, ignore_color: str | None, overwrite: bool
) -> None:
    """Convert RGB colour masks (MASKS: a file or a folder) to index masks, one class per
    palette colour; a mask with a colour not in the palette is refused, naming the colour and
    its pixels.

    \b
    Examples:
      unetlab data rgb-to-index colour_masks/ --palette classes.txt --out DATASET/masks
      unetlab data rgb-to-index SegmentationRGB/ --palette voc --out SegmentationClass
    """
    from unetlab.data.colour_masks import read_palette, rgb_to_index

    chosen = read_palette(palette, _colour(ignore_color))
    report = rgb_to_index(masks, chosen, out, overwrite)
    click.echo(f"wrote {len(report.written)} index mask(s) to {out}")
    if chosen.names:
        click.echo(
            f"classes ({len(chosen.names)}): {', '.join(chosen.names)}; put them in the "
            "dataset's classes.txt (the palette file itself is accepted there)"
        )


@data.command()
@click.argument("stack", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the PNG slices.",
)
@click.option("--prefix", default="", help="File name prefix of the slices.")
@_overwrite_option
def tiff(stack: Path, out: Path, prefix: str, overwrite: bool) -> None:
    """Split a multi-page TIFF STACK into one PNG per page (8/16-bit kept)."""
    from unetlab.data.convert import tiff_stack_to_slices

    written = tiff_stack_to_slices(stack, out, prefix, overwrite)
    click.echo(f"wrote {len(written)} slice(s): {written[0]} .. {written[-1]}")


@data.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--train", "n_train", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--val", "n_val", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--size", type=click.IntRange(min=16), default=128, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--classes", "num_classes", type=click.IntRange(2, 4), default=4, show_default=True)
@click.option("--force", is_flag=True, help="Replace shapes data already in OUT_DIR.")
def synth(
    out_dir: Path, n_train: int, n_val: int, size: int, seed: int, num_classes: int, force: bool
) -> None:
    """Write the synthetic shapes dataset (circles, squares, triangles) to OUT_DIR."""
    from unetlab.data.synthetic import make_shapes_dataset

    make_shapes_dataset(out_dir, n_train, n_val, size, seed, num_classes, overwrite=force)
    click.echo(f"wrote {n_train} train + {n_val} val images of {size}x{size} to {out_dir}")
