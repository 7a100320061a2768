"""Scans the viewer runs in the background: one thread each, their progress, slices and maps for the page.

A job keeps every finished volume's map (uint8, the slices' own orientation) and reads slices on demand, unwindowed
(Hounsfield units for CT), so the page can window and level them itself.
"""
from __future__ import annotations

import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..base import TrainConfig
from ..data.readers import ImageReadError
from ..data.volumes import Volume
from ..scanning.run import ScanSettings, scan


@dataclass
class Job:
    id: str
    name: str
    inputs: List[Path]
    out: Path
    status: str = "queued"  # queued, running, done, failed
    done: int = 0
    total: int = 0
    message: str = ""
    errors: List[Dict[str, str]] = field(default_factory=list)
    volumes: List[Volume] = field(default_factory=list)
    maps: List[np.ndarray] = field(default_factory=list)
    candidates: List[Dict[str, Any]] = field(default_factory=list)
    hide: str = ""  # a path prefix not to show (an upload's temporary folder)
    within: Optional[Path] = None  # the served folder: a link leaving it is not read
    client: str = ""  # who asked for it (the per-client queue limit)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def plain(self, text: str) -> str:
        return text.replace(self.hide, "") if self.hide else text

    def summary(self) -> Dict[str, Any]:
        with self.lock:
            return {"id": self.id, "name": self.name, "status": self.status, "done": self.done, "total": self.total,
                    "message": self.message, "errors": list(self.errors),
                    "volumes": [volume_info(v, i) for i, v in enumerate(self.volumes)]}


def volume_info(v: Volume, index: int) -> Dict[str, Any]:
    g = v.geometry
    return {"index": index, "name": Path(v.name).name, "kind": v.kind, "n_slices": v.n_slices, "rows": v.shape[0],
            "cols": v.shape[1], "modality": v.modality, "units": v.units, "series_uid": v.series_uid,
            "geometry": None if g is None else {"space": g.space, "origins": np.round(g.origins, 4).tolist(),
                                                "row_step": g.row_step.tolist(), "col_step": g.col_step.tolist()}}


class JobRunner:
    """Starts scans and keeps them; one model, shared by all (inference only)."""

    def __init__(self, model, cfg: TrainConfig, checkpoint: str, out: Path, settings: ScanSettings) -> None:
        self.model, self.cfg, self.checkpoint, self.out, self.settings = model, cfg, checkpoint, out, settings
        self.jobs: Dict[str, Job] = {}
        self.lock = threading.Lock()  # one scan at a time on the CPU; the page stays responsive

    def start(self, name: str, inputs: List[Path], *, hide: Optional[Path] = None, within: Optional[Path] = None,
              client: str = "") -> Job:
        """Scan ``inputs`` in the background; ``hide`` (an upload's temporary folder) is left out of messages, and
        files whose real path leaves ``within`` are not read."""
        job_id = uuid.uuid4().hex[:12]
        job = Job(job_id, name, inputs, self.out / job_id, hide=str(hide) + "/" if hide else "", within=within,
                  client=client)
        self.jobs[job_id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True, name=f"scan-{job_id}").start()
        return job

    def active(self, client: str) -> int:
        """Scans of ``client`` queued or running."""
        return sum(j.client == client and j.status in ("queued", "running") for j in list(self.jobs.values()))

    def _run(self, job: Job) -> None:
        def progress(done: int, total: int) -> None:
            with job.lock:
                job.done, job.total = done, total

        def finished(volume: Volume, rows: List[Dict[str, Any]], maps: np.ndarray) -> None:
            stack = maps if maps.dtype == np.uint8 else np.round(np.clip(maps, 0, 1) * 255).astype(np.uint8)[None]
            with job.lock:
                index = len(job.volumes)
                job.volumes.append(volume)
                job.maps.append(stack)
                job.candidates += [{**{k: _plain(v) for k, v in r.items()}, "volume": index} for r in rows]

        with self.lock:
            with job.lock:
                job.status = "running"
            try:
                result = scan(self.checkpoint, job.inputs, out=job.out, settings=self.settings, model=self.model,
                              cfg=self.cfg, on_progress=progress, on_volume=finished, within=job.within)
            except (ImageReadError, ValueError, OSError) as e:  # nothing to scan: the whole job fails, said plainly
                with job.lock:
                    job.status, job.message = "failed", job.plain(str(e))
                return
            except Exception as e:  # a bug must not take the server down: the page says what happened
                with job.lock:
                    job.status, job.message = "failed", f"{type(e).__name__}: {e}"
                return
            with job.lock:
                job.errors = [{"name": Path(e.name).name, "message": job.plain(e.message)} for e in result.errors]
                job.status = "done"
                job.message = (f"{len(job.volumes)} input(s) scanned, {len(job.candidates)} candidates"
                               + (f"; {len(job.errors)} could not be read" if job.errors else ""))
                if not job.volumes:
                    job.status = "failed"

    def slice_raw(self, job: Job, volume: int, k: int) -> np.ndarray:
        v = job.volumes[volume]
        if not 0 <= k < v.n_slices:
            raise IndexError(f"slice {k} is outside 0..{v.n_slices - 1}")
        return np.ascontiguousarray(v.read_raw(k), dtype=np.float32)

    def slice_map(self, job: Job, volume: int, k: int) -> np.ndarray:
        maps = job.maps[volume]
        if not 0 <= k < len(maps):
            raise IndexError(f"slice {k} is outside 0..{len(maps) - 1}")
        return np.ascontiguousarray(maps[k])

    def overlays_zip(self, job: Job) -> Path:
        target = job.out / "overlays.zip"
        if not target.exists():
            with zipfile.ZipFile(target, "w") as z:
                for png in sorted((job.out / "overlays").glob("*.png")):
                    z.write(png, png.name)
        return target


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
