"""Segment a video frame by frame and write a colour-overlay video (OpenCV, no torch needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetlab.errors import UnetlabError
from unetlab.fs.atomic import atomic_path
from unetlab.inference.core import ArrayPredictor
from unetlab.inference.overlay import blend, make_palette
from unetlab.progress import Progress

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "XVID", ".mkv": "XVID"}


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class VideoResult:
    path: Path
    frames: int
    fps: float
    size: tuple[int, int]  # width, height
    masks_dir: Path | None = None  # per-frame index masks, when asked for


def _quiet_ffmpeg() -> None:
    """Keep FFmpeg's own log lines (``[mov,mp4 @ 0x...] moov atom not found``) off the user's
    terminal: a file it cannot read gets our one-paragraph error instead. OpenCV reads the
    level when its FFmpeg backend starts, so this runs before any capture or writer opens;
    a level the user set stays."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def _open(path: Path):
    import cv2

    _quiet_ffmpeg()
    capture = cv2.VideoCapture(str(path))
    if not path.is_file() or not capture.isOpened():
        capture.release()
        raise UnetlabError(
            "cannot open this video: the file is missing, damaged or in a format OpenCV's "
            "FFmpeg build cannot decode",
            path,
            "check that it plays in a video player; re-encode it to MP4 (H.264) or AVI, "
            "e.g. ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4",
        )
    return capture


def read_frames(path: str | Path, batch_size: int = 4) -> Iterator[list[np.ndarray]]:
    """Batches of RGB ``H x W x 3`` uint8 frames; a clear error if not one frame decodes."""
    capture = _open(Path(path))
    try:
        batch: list[np.ndarray] = []
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            batch.append(np.ascontiguousarray(frame[:, :, ::-1]))
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
        if count == 0:
            raise UnetlabError(
                "the video opened but not one frame could be decoded",
                path,
                "re-encode it to MP4 (H.264) or AVI and try again",
            )
    finally:
        capture.release()


def video_info(path: str | Path) -> tuple[float, int]:
    """(frames per second, frame count as the container states it; 0 when unknown)."""
    import cv2

    capture = _open(Path(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    capture.release()
    return (fps if fps and fps == fps and fps > 0 else 25.0), max(frames, 0)


def predict_video(
    predictor: ArrayPredictor,
    path: str | Path,
    out_path: str | Path,
    alpha: float = 0.5,
    progress: bool = True,
    masks_dir: str | Path | None = None,
    overwrite: bool = False,
) -> VideoResult:
    """Predict every frame (``predictor.options.batch_size`` frames per pass) and write the
    colour overlay as a video next to ``out_path`` (codec from its ending: mp4v or XVID),
    atomically and never over a file this invocation did not create unless ``overwrite``.

    With ``masks_dir``, each frame's labels are also written there as an index mask,
    ``<video name>_<frame number, from 0>.png`` (a palette PNG in the class colours), for
    measuring or post-processing frames; the lossy video is for looking at.
    """
    path, out_path = Path(path), Path(out_path)
    masks_dir = None if masks_dir is None else Path(masks_dir)
    fourcc = FOURCC.get(out_path.suffix.lower())
    if fourcc is None:
        raise UnetlabError(
            f"cannot write a video ending in '{out_path.suffix}'", out_path, "use .mp4 or .avi"
        )
    fps, total = video_info(path)
    with atomic_path(out_path, overwrite=overwrite) as temp:  # whole video, or none
        return _write_overlay_video(
            predictor, path, out_path, temp, fourcc, fps, total, alpha, progress, masks_dir,
            overwrite,
        )


def _write_overlay_video(
    predictor: ArrayPredictor, path: Path, out_path: Path, temp: Path, fourcc: str, fps: float,
    total: int, alpha: float, progress: bool, masks_dir: Path | None, overwrite: bool,
) -> VideoResult:
    import cv2

    from unetlab.data.io import write_mask

    palette = make_palette(predictor.class_colors)
    digits = max(6, len(str(total)))
    writer = None
    frames = 0
    try:
        with Progress(total, path.name, "frame", enabled=progress) as bar:
            for batch in read_frames(path, predictor.options.batch_size):
                inputs = batch
                if predictor.in_channels == 1:
                    inputs = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[:, :, None] for f in batch]
                predictions = predictor.predict_batch(inputs)
                for frame, prediction in zip(batch, predictions, strict=True):
                    if writer is None:
                        size = (frame.shape[1], frame.shape[0])
                        writer = cv2.VideoWriter(
                            str(temp), cv2.VideoWriter.fourcc(*fourcc), fps, size
                        )
                        if not writer.isOpened():
                            raise UnetlabError(
                                f"OpenCV cannot write {fourcc} video here",
                                out_path,
                                "try the other ending (.mp4 or .avi)",
                            )
                    overlay = blend(frame, prediction.labels, palette, alpha)
                    writer.write(np.ascontiguousarray(overlay[:, :, ::-1]))
                    if masks_dir is not None:
                        write_mask(
                            masks_dir / f"{path.stem}_{frames:0{digits}d}.png",
                            prediction.labels,
                            palette.tolist(),
                            overwrite,
                        )
                    frames += 1
                bar.update(len(batch))
    finally:
        if writer is not None:
            writer.release()
    return VideoResult(out_path, frames, fps, size, masks_dir)
