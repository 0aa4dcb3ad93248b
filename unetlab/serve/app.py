"""The web app of ``unetlab serve``: routes over :mod:`unetlab.serve.handlers`, one page.

All pixel work (decoding uploads, predicting, scoring the split, drawing panels) runs on one
worker thread, in arrival order: the model is used by one caller at a time, an upload waits for
at most one image of the split being inspected, and a failing request is answered with its
message while the server keeps serving. Files are served by name only from the page's static
folder (through :func:`~unetlab.serve.handlers.resolve_inside`); dataset images and cached
predictions are addressed by their position in the split, never by a path.
"""

import asyncio
import ipaddress
import itertools
import logging
import socket
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetlab.errors import UnetlabError
from unetlab.serve import handlers
from unetlab.serve.handlers import PredictionView
from unetlab.serve.inspection import Inspection, cache_folder, inspect_split, open_split
from unetlab.serve.model import model_card, model_file, open_predictor, palette, run_folder

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
PANEL_SIDE = 1024  # longest side of the inspection panels sent to the page
KEEP_RESULTS = 8  # predicted uploads kept for downloads (oldest dropped first)
KEEP_JOBS = 64
LOG = logging.getLogger("unetlab.serve")


def require_web() -> None:
    """A clear error when the ``[web]`` extra is not installed."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UnetlabError(
            f"unetlab serve needs FastAPI and uvicorn ({exc})",
            hint="pip install 'unetlab[web]' (or: pip install fastapi uvicorn)",
        ) from None


@dataclass
class ServeConfig:
    """What ``unetlab serve`` was asked for (see its ``--help``)."""

    model: str
    data: str | None = None
    split: str = "val"
    device: str = "auto"
    precision: str = "fp32"
    tile: int = 512
    threads: int | None = None  # CPU threads of the forward pass (None: one per core)
    max_upload_mb: float = 100.0
    max_megapixels: float = 150.0
    cache: bool = True

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)


@dataclass
class Job:
    """One upload on its way through the worker; what the page polls."""

    id: str
    name: str
    state: str = "queued"  # queued, running, done, error
    done: int = 0
    total: int = 1
    message: str = ""
    hint: str | None = None
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "hint": self.hint,
            "result": self.result,
        }


@dataclass
class InspectionStatus:
    state: str = "off"  # off (no --data), running, done, error
    done: int = 0
    total: int = 0
    message: str = ""
    hint: str | None = None
    result: Inspection | None = None
    dataset: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "hint": self.hint,
        }
        if self.result is not None:
            out.update(self.result.to_dict())
        return out


@dataclass
class ServeState:
    """The opened model, its worker thread, and what the page has asked for so far."""

    config: ServeConfig
    predictor: Any
    card: dict[str, Any]
    colors: list[tuple[int, int, int]]
    worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="unetlab-model")
    )
    jobs: OrderedDict[str, Job] = field(default_factory=OrderedDict)
    results: OrderedDict[str, PredictionView] = field(default_factory=OrderedDict)
    inspection: InspectionStatus = field(default_factory=InspectionStatus)
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def open(cls, config: ServeConfig) -> "ServeState":
        predictor = open_predictor(
            config.model, config.device, config.precision, tile=config.tile, progress=False,
            threads=config.threads,
        )
        card = model_card(config.model, predictor)
        card["max_upload_bytes"] = config.max_upload_bytes
        card["max_megapixels"] = config.max_megapixels
        card["data"] = config.data and {"root": str(config.data), "split": config.split}
        return cls(config, predictor, card, palette(predictor))

    async def work(self, function, *args):
        """Run ``function(*args)`` on the model's worker thread and await its result."""
        return await asyncio.wrap_future(self.worker.submit(function, *args))

    def new_id(self) -> str:
        return str(next(self.counter))

    def keep(self, table: OrderedDict, key: str, value: Any, limit: int) -> None:
        table[key] = value
        while len(table) > limit:
            table.popitem(last=False)

    # ---- uploads

    def run_job(self, job: Job, image) -> None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        job.state = "running"
        try:
            view = handlers.predict_view(self.predictor, image, job.name, progress)
        except UnetlabError as exc:
            job.state, job.message, job.hint = "error", exc.message, exc.hint
            return
        except Exception as exc:  # the server goes on; the page shows what happened
            LOG.exception("prediction of %s failed", job.name)
            job.state, job.message = "error", f"unexpected {type(exc).__name__}: {exc}"
            return
        result_id = self.new_id()
        self.keep(self.results, result_id, view, KEEP_RESULTS)
        job.result = {"id": result_id, **view.summary()}
        job.state = "done"

    # ---- the split

    def start_inspection(self) -> None:
        if not self.config.data:
            return
        self.inspection = InspectionStatus(state="running")
        threading.Thread(target=self._inspect, name="unetlab-inspect", daemon=True).start()

    def _inspect(self) -> None:
        config, status = self.config, self.inspection

        def progress(done: int, total: int) -> None:
            status.done, status.total = done, total

        def run(work):
            return self.worker.submit(work).result()

        try:
            assert config.data is not None  # inspections start only with --data
            status.dataset = open_split(self.predictor, config.data, config.split)
            status.total = len(status.dataset)
            source = model_file(config.model)
            folder = None
            if config.cache:
                folder = cache_folder(run_folder(config.model), source, config.data, config.split)
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:  # a read-only run folder: keep the inspection in memory
                    LOG.warning("no inspection cache in %s (%s)", folder, exc)
                    folder = None
            status.result = inspect_split(
                self.predictor, status.dataset, source, folder, run, progress
            )
            status.done = status.total
            status.state = "done"
        except UnetlabError as exc:
            status.state, status.message, status.hint = "error", exc.message, exc.hint
            if exc.path:
                status.message = f"{exc.path}: {exc.message}"
        except Exception as exc:
            LOG.exception("inspection of %s failed", config.data)
            status.state, status.message = "error", f"unexpected {type(exc).__name__}: {exc}"

    def panel(self, index: int, kind: str, focus: int | None) -> bytes:
        """One picture of the inspection: image, truth, prediction or errors (PNG)."""
        from unetlab.inference.overlay import colorize, make_palette, to_display

        result, dataset = self.inspection.result, self.inspection.dataset
        assert result is not None  # panels are asked for once the inspection is done
        image, truth = dataset.read(index)
        if kind == "image":
            picture = to_display(image)
        elif kind == "truth":
            picture = colorize(truth, make_palette(self.colors))
        elif kind == "prediction":
            picture = colorize(result.prediction(index), make_palette(self.colors))
        else:
            picture = handlers.error_map(image, result.prediction(index), truth, focus)
        height, width = picture.shape[:2]
        scale = min(1.0, PANEL_SIDE / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return handlers.png_bytes(handlers.resize(picture, size, smooth=kind == "image"))

    def error_counts(self, index: int, focus: int | None) -> dict[str, int]:
        _, truth = self.inspection.dataset.read(index)
        assert self.inspection.result is not None
        prediction = self.inspection.result.prediction(index)
        return handlers.error_counts(prediction, truth, focus)


def create_app(config: ServeConfig, state: ServeState | None = None):
    """The FastAPI app for ``config`` (the model is opened here unless ``state`` is given)."""
    require_web()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.gzip import GZipMiddleware
    from fastapi.responses import JSONResponse, Response

    state = state or ServeState.open(config)

    @asynccontextmanager
    async def lifespan(app):
        state.start_inspection()
        yield
        state.worker.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="unetlab serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.state.serve = state

    def refuse(status: int, message: str, hint: str | None = None) -> JSONResponse:
        return JSONResponse({"error": message, "hint": hint}, status_code=status)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
            "frame-ancestors 'none'"
        )
        return response

    @app.exception_handler(UnetlabError)
    async def user_error(request: Request, exc: UnetlabError) -> JSONResponse:
        message = f"{exc.path}: {exc.message}" if exc.path else exc.message
        return refuse(400, message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}"
            for error in exc.errors()
        )
        return refuse(400, f"bad request ({problems})")

    def png(data: bytes, filename: str | None = None) -> Response:
        headers = {"Cache-Control": "no-store"}
        if filename:
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return Response(data, media_type="image/png", headers=headers)

    def static_file(name: str) -> Response:
        path = handlers.resolve_inside(STATIC, name)
        if path is None or path.suffix not in MEDIA_TYPES:
            return refuse(404, "not found")
        return Response(path.read_bytes(), media_type=MEDIA_TYPES[path.suffix])

    @app.get("/")
    async def index() -> Response:
        return static_file("index.html")

    @app.get("/static/{name:path}")
    async def static(name: str) -> Response:
        return static_file(name)

    @app.get("/api/card")
    async def card() -> dict:
        return state.card

    @app.post("/api/predict")
    async def predict(request: Request, name: str = "upload") -> Response:
        name = Path(name.replace("\\", "/")).name[:200] or "upload"
        limit = config.max_upload_bytes
        too_large = (
            f"the upload is larger than the limit of {config.max_upload_mb:g} MB",
            "start the server with a larger --max-upload-mb, or downscale the image",
        )
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return refuse(413, f"{name}: {too_large[0]}", too_large[1])
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return refuse(413, f"{name}: {too_large[0]}", too_large[1])
            chunks.append(chunk)
        try:
            image = await state.work(
                handlers.decode_upload, b"".join(chunks), name, config.max_pixels
            )
        except UnetlabError as exc:
            return refuse(415, f"{name}: {exc.message}", exc.hint)
        job = Job(state.new_id(), name)
        job.total = handlers.forward_passes(state.predictor, *image.shape[:2])
        state.keep(state.jobs, job.id, job, KEEP_JOBS)
        state.worker.submit(state.run_job, job, image)
        return JSONResponse(job.to_dict(), status_code=202)

    @app.get("/api/jobs/{job_id}")
    async def job(job_id: str) -> Response:
        found = state.jobs.get(job_id)
        return JSONResponse(found.to_dict()) if found else refuse(404, "no such job")

    def view_of(result_id: str) -> PredictionView:
        view = state.results.get(result_id)
        if view is None:
            raise UnetlabError("this prediction is no longer kept", hint="upload the image again")
        return view

    @app.get("/api/results/{result_id}/image.png")
    async def result_image(result_id: str) -> Response:
        return png(handlers.png_bytes(view_of(result_id).display_image))

    @app.get("/api/results/{result_id}/labels")
    async def result_labels(result_id: str) -> Response:
        """Display-size labels, one byte per pixel, row by row (what the page blends)."""
        data = view_of(result_id).display_labels.tobytes()
        return Response(data, media_type="application/octet-stream")

    @app.get("/api/results/{result_id}/probability/{index}")
    async def result_probability(result_id: str, index: int) -> Response:
        """Display-size probability of class ``index``, one byte (p x 255) per pixel."""
        view = view_of(result_id)
        if view.display_probabilities is None:
            return refuse(404, "no probabilities kept for this image (too large)")
        handlers.parse_classes(str(index), state.predictor.num_classes)
        data = view.display_probabilities[index].tobytes()
        return Response(data, media_type="application/octet-stream")

    def download_name(view: PredictionView, suffix: str) -> str:
        stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(view.name).stem)
        return f"{stem or 'image'}_{suffix}.png"

    @app.get("/api/results/{result_id}/mask.png")
    async def result_mask(result_id: str, threshold: float | None = None) -> Response:
        view = view_of(result_id)
        labels = handlers.labels_at(view, threshold, state.predictor.options.threshold)
        data = await state.work(handlers.mask_png, labels, state.colors)
        return png(data, download_name(view, "mask"))

    @app.get("/api/results/{result_id}/overlay.png")
    async def result_overlay(
        result_id: str,
        alpha: float = 0.5,
        threshold: float | None = None,
        hidden: str | None = None,
    ) -> Response:
        """``hidden``: classes left clear, e.g. ``0,2``; empty colours every class; absent
        leaves the background clear (``unetlab predict``'s overlay)."""
        view = view_of(result_id)
        labels = handlers.labels_at(view, threshold, state.predictor.options.threshold)
        classes = state.predictor.num_classes
        hide = None if hidden is None else handlers.parse_classes(hidden, classes)
        data = await state.work(handlers.overlay_png, view.image, labels, state.colors, alpha, hide)
        return png(data, download_name(view, "overlay"))

    @app.get("/api/inspect")
    async def inspection() -> dict:
        return state.inspection.to_dict()

    def checked_index(index: int) -> int:
        status = state.inspection
        if status.result is None:
            raise UnetlabError("the split is not inspected yet", hint="wait for the table")
        if not 0 <= index < len(status.result.ids):
            raise UnetlabError(f"no image {index} in split '{status.result.split}'")
        return index

    @app.get("/api/inspect/{index}/errors")
    async def inspection_errors(index: int, focus: int | None = None) -> dict:
        focus_class = _focus(focus, state.predictor.num_classes)
        return await state.work(state.error_counts, checked_index(index), focus_class)

    @app.get("/api/inspect/{index}/{kind}.png")
    async def inspection_panel(index: int, kind: str, focus: int | None = None) -> Response:
        if kind not in ("image", "truth", "prediction", "errors"):
            return refuse(404, "not found")
        focus_class = _focus(focus, state.predictor.num_classes)
        return png(await state.work(state.panel, checked_index(index), kind, focus_class))

    return app


def _focus(focus: int | None, num_classes: int) -> int | None:
    """The error map's positive class: None or -1 for every class but 0, else an index."""
    if focus is None or focus == -1:
        return None
    return handlers.parse_classes(str(focus), num_classes)[0]


def host_notice(host: str, port: int) -> str | None:
    """What to tell the user when the server is reachable from other machines (else None)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"note: listening on {host}:{port}: anyone who can reach this machine on port {port} "
        "can run the model and see the images of the dataset (no login, no encryption); "
        "use --host 127.0.0.1 to keep it on this machine"
    )


def check_port(host: str, port: int) -> None:
    """A clear error when ``host:port`` cannot be bound (in use, or not this machine)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UnetlabError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                hint=f"choose another --port (e.g. {port + 1}) or stop what uses this one",
            ) from None


def run_server(config: ServeConfig, host: str, port: int, on_ready=print) -> None:
    """Open the model, then serve until Ctrl-C or SIGTERM."""
    require_web()
    import uvicorn

    check_port(host, port)
    state = ServeState.open(config)
    app = create_app(config, state)
    shown = f"[{host}]" if ":" in host else host
    classes = ", ".join(state.predictor.class_names)
    on_ready(f"unetlab serve: {config.model} ({classes})")
    if config.data:
        on_ready(f"  inspecting split '{config.split}' of {config.data} (worst images first)")
    notice = host_notice(host, port)
    if notice:
        on_ready(notice)
    on_ready(f"  open http://{shown}:{port}/ (Ctrl-C stops the server)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
