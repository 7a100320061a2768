"""What ``rensenet scan`` writes: candidates.csv, images.csv, a probability map per input (``.npy`` for images,
NIfTI with the source's affine for volumes), overlay PNGs and report.md. The tables are rewritten atomically
after every input, so an interrupted or partly failed scan keeps what it finished."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from ..base import TrainConfig
from ..base.cam import DEFAULT_METHOD
from ..base.io import atomic_write, write_csv, write_json, write_text
from ..data.volumes import Volume, display_to_source
from ..explanation.figures import scan_overlay
from .inputs import InputError

#: Everything a scan writes into its folder: what ``--force`` removes, and no other file.
SCAN_OUTPUTS = ("candidates.csv", "images.csv", "report.md", "scan.json", "froc.json", "froc.png", "overlays.zip",
                "maps", "overlays")
#: Settings that change what a scan finds: a resumed scan must have been started with the same.
_RESULT_SETTINGS = ("stride", "refine", "radius", "cam_peaks", "cam_method", "cam_layers", "exact", "max_candidates",
                    "min_score", "window", "spacing", "plane", "allow_modality")
CANDIDATE_COLUMNS = ["path", "series_uid", "slice", "x", "y", "score", "x_mm", "y_mm", "z_mm", "space", "size_px",
                     "diameter_mm", "rank"]
IMAGE_COLUMNS = ["path", "series_uid", "kind", "n_slices", "max_candidate_score", "map_max", "n_candidates",
                 "seconds", "seconds_per_slice", "map", "status"]


def _stem(name: str, used: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name.replace(".nii.gz", "").rsplit(".", 1)[0]) or "input"
    stem, i = base, 2
    while stem in used:
        stem, i = f"{base}-{i}", i + 1
    used.add(stem)
    return stem


def prepare_out(out: Optional[Path], if_exists: str) -> None:
    """Check ``out`` before anything is scanned: a file is refused; a folder holding anything is refused unless
    ``if_exists`` is ``overwrite`` (the earlier scan's outputs are removed, nothing else) or ``resume``."""
    if if_exists not in ("error", "overwrite", "resume"):
        raise ValueError(f"if_exists must be error, overwrite or resume, got {if_exists!r}")
    if out is None or not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out}: a file, not a folder; give --out a folder (new or empty) for the scan's outputs")
    if not any(out.iterdir()) or if_exists == "resume":
        return
    if if_exists == "error":
        raise FileExistsError(f"{out} is not empty (an earlier scan?); pass --force to replace the earlier scan's "
                              "outputs, or --resume to keep the inputs it finished and scan the rest")
    for name in SCAN_OUTPUTS:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def write_map(path: Path, volume: Volume, maps: np.ndarray) -> Path:
    """A slice's map as float32 ``.npy``; a volume's as NIfTI (probability x 255 as uint8, slope 1/255), in the
    source file's voxel order and affine for NIfTI, with the series' geometry for DICOM."""
    if not volume.is_volume:
        return atomic_write(path.with_suffix(".npy"), lambda p: np.save(p, maps.astype(np.float32)))
    import nibabel as nib

    if volume.kind == "nifti":
        data, affine = display_to_source(volume, maps), volume.affine
    else:
        data = np.transpose(maps, (2, 1, 0))  # (column, row, slice)
        affine = volume.geometry.affine_ras() if volume.geometry is not None else np.eye(4)
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_slope_inter(1 / 255, 0)
    target = path.with_name(path.name + ".nii.gz")
    return atomic_write(target, lambda p: nib.save(img, str(p)))


def _placement(s: Any) -> str:
    """Where the report says candidates lie: the heatmap's peak (with the CAM, where not the model's default) or
    the map's."""
    if s.refine != "cam":
        return "the probability map's peak."
    if not (s.cam_method or s.cam_layers):
        return "the heatmap's peak inside their window (CAM-refined)."
    layers = ", ".join(s.cam_layers) if s.cam_layers else "the default layers"
    return f"the heatmap's peak inside their window (CAM-refined: {s.cam_method or DEFAULT_METHOD} on {layers})."


class ScanWriter:
    """Collects a scan's results input by input and writes them under ``out`` (nothing when ``out`` is None)."""

    def __init__(self, out: Optional[Path], cfg: TrainConfig, settings: Any, checkpoint: str) -> None:
        self.out, self.cfg, self.settings, self.checkpoint = out, cfg, settings, checkpoint
        self.rows: List[Dict[str, Any]] = []
        self.images: List[Dict[str, Any]] = []
        self.errors: List[InputError] = []
        self.overlays: List[Tuple[str, str]] = []
        self.stems: set = set()
        self.finished: set = set()  # (path, series_uid) of inputs a resumed scan keeps
        self.seconds, self.slices = 0.0, 0

    def start(self, if_exists: str) -> None:
        """Record what this scan is (scan.json); with ``resume``, take over the inputs an earlier scan into the
        same folder finished, which must have used the same weights and settings."""
        if self.out is None:
            return
        me = {"checkpoint": self.checkpoint, "settings": _result_settings(self.settings)}
        record = self.out / "scan.json"
        if if_exists == "resume" and record.exists():
            try:
                before = json.loads(record.read_text())
            except (OSError, ValueError) as e:
                raise ValueError(f"{record}: not readable ({e}); pass --force to scan again from the start") from None
            if before != json.loads(json.dumps(me)):
                raise ValueError(f"{self.out} holds a scan with other weights or settings ({record}); --resume "
                                 "continues only the same scan: pass --force to replace it, or another --out")
            self._take_over()
        elif if_exists == "resume" and (self.out / "images.csv").exists():
            raise ValueError(f"{self.out}: an earlier scan without scan.json, so what it used is unknown; pass "
                             "--force to replace it, or another --out")
        write_json(self.out / "scan.json", me)

    def _take_over(self) -> None:
        images_csv, cands_csv = self.out / "images.csv", self.out / "candidates.csv"
        if not images_csv.exists():
            return
        text = {"path": str, "series_uid": str, "space": str, "map": str, "status": str, "kind": str}
        images = pd.read_csv(images_csv, dtype=text, keep_default_na=False)
        images = images[images.status == "ok"]
        cands = pd.read_csv(cands_csv, dtype=text) if cands_csv.exists() and cands_csv.stat().st_size else None
        keep = set(zip(images.path, images.series_uid))
        if cands is not None and len(cands):
            cands["series_uid"] = cands["series_uid"].fillna("")
            mine = [k in keep for k in zip(cands.path, cands.series_uid)]
            self.rows = [{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
                         for r in cands[mine].to_dict("records")]
        self.images = images.to_dict("records")
        self.finished = keep
        self.seconds = float(pd.to_numeric(images.seconds).sum())
        self.slices = int(pd.to_numeric(images.n_slices).sum())
        self.stems |= {re.sub(r"(\.nii\.gz|\.npy)$", "", Path(m).name) for m in images["map"] if m}
        self.overlays = [(p.stem, f"overlays/{p.name}") for p in sorted((self.out / "overlays").glob("*.png"))]

    def done(self, volume: Volume) -> bool:
        """Whether a resumed scan already finished ``volume``."""
        return (volume.name, volume.series_uid) in self.finished

    def _tables(self) -> Tuple[pd.DataFrame, pd.DataFrame]:
        cands = pd.DataFrame(self.rows, columns=CANDIDATE_COLUMNS if not self.rows else None)
        return cands, pd.DataFrame(self.images, columns=IMAGE_COLUMNS)

    def _write_tables(self) -> None:
        if self.out is not None:
            cands, images = self._tables()
            write_csv(self.out / "candidates.csv", cands.drop(columns=["map_x", "map_y"], errors="ignore"))
            write_csv(self.out / "images.csv", images)

    def failed(self, name: str, message: str, *, series_uid: str = "") -> None:
        print(f"rensenet scan: skipped {message}", file=sys.stderr)
        self.errors.append(InputError(name, message))
        self.images.append({"path": name, "series_uid": series_uid, "status": f"failed: {message}"})
        self._write_tables()

    def add(self, volume: Volume, rows: List[Dict[str, Any]], maps: np.ndarray, seconds: float) -> None:
        rows = sorted(rows, key=lambda r: -r["score"])
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        stem = _stem(volume.name if volume.kind != "dicom-series" else f"{volume.name}_{volume.series_uid[-8:]}",
                     self.stems)
        map_file = ""
        if self.out is not None:
            map_file = str(write_map(self.out / "maps" / stem, volume, maps).relative_to(self.out))
            self._overlays(volume, rows, maps, stem)
        self.rows.extend(rows)
        self.seconds, self.slices = self.seconds + seconds, self.slices + volume.n_slices
        self.images.append({"path": volume.name, "series_uid": volume.series_uid, "kind": volume.kind,
                            "n_slices": volume.n_slices, "max_candidate_score": rows[0]["score"] if rows else 0.0,
                            "map_max": float(maps.max()) / (255.0 if maps.dtype == np.uint8 else 1.0),
                            "n_candidates": len(rows), "seconds": round(seconds, 3),
                            "seconds_per_slice": round(seconds / max(volume.n_slices, 1), 4), "map": map_file,
                            "status": "ok"})
        self._write_tables()

    def _overlays(self, volume: Volume, rows: List[Dict[str, Any]], maps: np.ndarray, stem: str) -> None:
        slices = list(dict.fromkeys(r["slice"] for r in rows[: max(self.settings.overlays, 0)]))
        for k in slices[: self.settings.overlays]:
            image = volume.read(k)
            pmap = maps[k] / 255.0 if volume.is_volume else maps
            points = [(r["x"], r["y"], r["rank"], r["score"]) for r in rows if r["slice"] == k and r["rank"] <= 10]
            name = f"{stem}_slice{k}.png" if volume.is_volume else f"{stem}.png"
            scan_overlay(self.out / "overlays" / name, image, pmap, points,
                         title=f"{Path(volume.name).name}" + (f", slice {k}" if volume.is_volume else ""))
            self.overlays.append((f"{Path(volume.name).name} slice {k}", f"overlays/{name}"))

    @property
    def seconds_per_slice(self) -> float:
        return self.seconds / max(self.slices, 1)

    def finish(self, notes: List[str]) -> Tuple[pd.DataFrame, pd.DataFrame, List[InputError], float]:
        self._write_tables()
        cands, images = self._tables()
        if self.out is not None:
            write_text(self.out / "report.md", self.report(cands, images, notes))
        return cands, images, self.errors, self.seconds_per_slice

    def report(self, cands: pd.DataFrame, images: pd.DataFrame, notes: List[str], froc: str = "") -> str:
        s, cfg = self.settings, self.cfg
        ok = images[images.status == "ok"] if len(images) else images
        lines = [
            "# rensenet scan", "",
            f"Checkpoint `{self.checkpoint}` ({cfg.model}, trained on {cfg.native_size or cfg.img_size}-px windows"
            f"{f' at {cfg.scale:g}x' if cfg.scale != 1 else ''}; window {s.window or cfg.window or 'as in the images'}). "
            f"Dense evaluation at stride {s.stride} px of the model's input, candidates {s.radius:g} px apart at "
            f"least, up to {s.max_candidates} per slice, placed at "
            + _placement(s), "",
            f"{len(ok)} inputs, {self.slices} slices, **{self.seconds_per_slice:.3f} s per slice** "
            f"({self.seconds:.1f} s in all), {len(cands)} candidates.", "",
        ]
        if froc:
            lines += [froc, ""]
        lines += ["| input | slices | candidates | top score | s/slice | status |", "|---|---|---|---|---|---|"]
        for _, r in images.iterrows():
            name = Path(str(r["path"])).name
            if r["status"] == "ok":
                lines.append(f"| {name} | {r['n_slices']} | {r['n_candidates']} | {r['max_candidate_score']:.3f} | "
                             f"{r['seconds_per_slice']:.3f} | ok |")
            else:
                lines.append(f"| {name} | - | - | - | - | {r['status']} |")
        if len(cands):
            lines += ["", "Top candidates:", "", "| input | slice | x | y | score | size px |" +
                      (" x, y, z mm |" if "x_mm" in cands else ""), "|---|---|---|---|---|---|" +
                      ("---|" if "x_mm" in cands else "")]
            for _, r in cands.sort_values("score", ascending=False).head(10).iterrows():
                mm = f" {r['x_mm']}, {r['y_mm']}, {r['z_mm']} ({r['space']}) |" if "x_mm" in cands and \
                    pd.notna(r.get("x_mm")) else (" - |" if "x_mm" in cands else "")
                lines.append(f"| {Path(str(r['path'])).name} | {r['slice']} | {r['x']} | {r['y']} | {r['score']:.3f} | "
                             f"{r['size_px']} |{mm}")
        if notes:
            lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
        lines += [""] + [f"![{title}]({rel})" for title, rel in self.overlays[:24]]
        return "\n".join(lines) + "\n"


def _result_settings(settings: Any) -> Dict[str, Any]:
    values = {k: getattr(settings, k) for k in _RESULT_SETTINGS}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
