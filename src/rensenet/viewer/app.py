"""``rensenet view``: a local web app to scan and read CT with the model's findings (FastAPI, one static page).

It shows patient images, so: it answers only to the host names it was started on; state-changing calls need the
page's session token and a same-origin request; only files under the folder it was started on (links resolved),
or uploaded in this session, can be read (a path outside it is refused with 403, an absolute one with 400);
uploads have a size limit counted as they stream and live in a temporary folder removed when the app stops; each
client may have a few scans queued; scans write only into the output folder. Everything the page needs is served
by the app itself: no CDN, no web fonts, no telemetry (docs/view.md, Security).
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..data.readers import WINDOWS
from .guards import LOOPBACK_HOSTS, HostGuard, check_same_origin, new_token, require_json, save_upload
from .jobs import JobRunner

STATIC = Path(__file__).resolve().parent / "static"
DOWNLOADS = ("candidates.csv", "report.md", "images.csv", "overlays.zip")


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, refused unless it stays inside ``root`` (symbolic links resolved)."""
    if relative.startswith(("/", "\\")) or PurePosixPath(relative).is_absolute() or (len(relative) > 1 and relative[1] == ":"):
        raise HTTPException(400, f"{relative!r}: absolute paths are not accepted; give a path inside the folder")
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise HTTPException(403, f"{relative!r} is outside the folder this viewer serves")
    if not target.exists():
        raise HTTPException(404, f"{relative!r}: no such file or folder")
    return target


#: Scans one client may have queued or running at once.
MAX_JOBS_PER_CLIENT = 4


def create_app(runner: JobRunner, *, root: Optional[Path], max_upload_mb: float = 512.0,
               hosts: Iterable[str] = LOOPBACK_HOSTS, max_jobs_per_client: int = MAX_JOBS_PER_CLIENT) -> FastAPI:
    """The app over ``runner``'s model; it answers to ``hosts`` only (``rensenet view`` adds ``--host``)."""
    uploads = Path(tempfile.mkdtemp(prefix="rensenet-view-uploads-"))
    root = root.resolve() if root is not None else None
    token = new_token()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        shutil.rmtree(uploads, ignore_errors=True)  # uploaded patient images do not outlive the session

    app = FastAPI(title="rensenet view", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.uploads = uploads
    app.add_middleware(HostGuard, allowed=hosts)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/info")
    def info() -> Dict[str, Any]:
        cfg = runner.cfg
        return {"model": cfg.model, "checkpoint": Path(runner.checkpoint).name, "classes": cfg.class_names,
                "window": cfg.window, "presets": {k: list(v) for k, v in WINDOWS.items()},
                "folder": root.name if root else None, "max_upload_mb": max_upload_mb, "token": token}

    @app.get("/api/browse")
    def browse(path: str = "") -> Dict[str, Any]:
        if root is None:
            raise HTTPException(404, "this viewer was started without a folder; upload files instead")
        folder = inside(root, path)
        if not folder.is_dir():
            raise HTTPException(400, f"{path!r} is not a folder")
        entries = [{"name": p.name, "path": str(p.relative_to(root)), "kind": "dir" if p.is_dir() else "file"}
                   for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
        return {"path": str(folder.relative_to(root)) if folder != root else "", "entries": entries}

    @app.post("/api/upload")
    async def upload(request: Request) -> Dict[str, Any]:
        check_same_origin(request, token)
        return await save_upload(request, uploads, max_upload_mb)

    @app.post("/api/scans")
    async def start_scan(request: Request) -> Dict[str, Any]:
        check_same_origin(request, token)
        require_json(request)
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "give a JSON object with 'path' or 'upload'")
        client = request.client.host if request.client else ""
        if runner.active(client) >= max_jobs_per_client:
            raise HTTPException(429, f"{max_jobs_per_client} scans of yours are queued or running already (the "
                                     "limit per client); wait for one to finish")
        if "upload" in body:
            folder = uploads / str(body["upload"])
            if "/" in str(body["upload"]) or ".." in str(body["upload"]) or not folder.is_dir():
                raise HTTPException(404, "no such upload in this session")
            return runner.start(str(body.get("name") or "upload"), [folder], hide=folder, client=client).summary()
        elif "path" in body and root is not None:
            path = inside(root, str(body["path"]))
            return runner.start(path.name, [path], within=root, client=client).summary()
        raise HTTPException(400, "give 'path' (inside the folder) or 'upload' (an upload of this session)")

    def job(job_id: str):
        if job_id not in runner.jobs:
            raise HTTPException(404, f"no scan {job_id!r}")
        return runner.jobs[job_id]

    @app.get("/api/scans")
    def list_scans() -> List[Dict[str, Any]]:
        return [j.summary() for j in runner.jobs.values()]

    @app.get("/api/scans/{job_id}")
    def scan_status(job_id: str) -> Dict[str, Any]:
        return job(job_id).summary()

    @app.get("/api/scans/{job_id}/candidates")
    def candidates(job_id: str) -> JSONResponse:
        j = job(job_id)
        with j.lock:
            rows = sorted(j.candidates, key=lambda r: -r["score"])
        return JSONResponse(rows)

    def binary(array: np.ndarray) -> Response:
        return Response(array.tobytes(), media_type="application/octet-stream",
                        headers={"X-Rows": str(array.shape[0]), "X-Cols": str(array.shape[1]),
                                 "X-Dtype": str(array.dtype)})

    @app.get("/api/scans/{job_id}/volumes/{volume}/slices/{k}")
    def slice_raw(job_id: str, volume: int, k: int) -> Response:
        j = job(job_id)
        try:
            return binary(runner.slice_raw(j, volume, k))
        except IndexError as e:
            raise HTTPException(404, str(e)) from None
        except Exception as e:
            raise HTTPException(500, f"slice {k} could not be read ({e})") from None

    @app.get("/api/scans/{job_id}/volumes/{volume}/maps/{k}")
    def slice_map(job_id: str, volume: int, k: int) -> Response:
        try:
            return binary(runner.slice_map(job(job_id), volume, k))
        except IndexError as e:
            raise HTTPException(404, str(e)) from None

    @app.get("/api/scans/{job_id}/files/{name}")
    def download(job_id: str, name: str) -> FileResponse:
        j = job(job_id)
        if name not in DOWNLOADS or j.status != "done":
            raise HTTPException(404, f"{name!r} is not a download of this scan (one of {DOWNLOADS}, once it is done)")
        path = runner.overlays_zip(j) if name == "overlays.zip" else j.out / name
        return FileResponse(path, filename=f"{j.name}-{name}")

    return app
