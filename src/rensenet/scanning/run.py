"""``rensenet scan``: find small lesions in whole slices and volumes with a window classifier.

Every slice is read at its native size (resampled only to the model's training scale), scored densely at a
stride, turned into a per-pixel lesion-probability map whose peaks are the candidates, and each candidate is moved
to its heatmap's peak inside its window (``refine="cam"``). Inputs are streamed slice by slice; an input that
cannot be read is reported and the others still finish.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..base import TrainConfig, load_model, resolve_device
from ..base.cam import CAM_METHODS, resolve_layers
from ..base.windows import DEFAULT_MAX_PEAKS, DEFAULT_REFINE, DEFAULT_STRIDE, REFINE_MODES, WindowScorer, nms_radius
from ..data.readers import ImageReadError
from ..data.volumes import Volume
from ..models.inference import optimize_for_inference
from .inputs import InputError, iter_slices, open_inputs
from .outputs import ScanWriter, prepare_out

def _opt(help: str, **kw: Any) -> Dict[str, Any]:
    return {"help": help, **kw}


@dataclass
class ScanSettings:
    """How to scan; the defaults were chosen on the val splits of the whole-image tasks (docs/scan.md)."""

    stride: int = field(default=DEFAULT_STRIDE, metadata=_opt("pixels of the model's input between windows"))
    refine: str = field(default=DEFAULT_REFINE, metadata=_opt(
        "where a candidate lies: cam = its heatmap's peak inside its window, map = the probability map's peak",
        choices=REFINE_MODES))
    radius: Optional[float] = field(default=None, metadata=_opt(
        "least distance between two candidates in px (default: an eighth of the window)"))
    cam_peaks: int = field(default=1, metadata=_opt(
        "heatmap peaks a CAM-refined candidate may take, the strongest free one (more find clustered lesions)"))
    cam_method: Optional[str] = field(default=None, metadata=_opt(
        "CAM method that places a refined candidate (default: the model's, hirescam)", choices=tuple(CAM_METHODS)))
    cam_layers: Optional[Tuple[str, ...]] = field(default=None, metadata=_opt(
        "its target layers (default: the model's; `rensenet explain` or the benchmark's CAM grid chooses them on "
        "val)", nargs="+"))
    exact: bool = field(default=False, metadata=_opt(
        "classify every window on its own, with the context it was trained to see (exact tiling: the check of the "
        "dense map, many times slower; benchmarks/WHOLE_IMAGE.md)"))
    max_candidates: int = field(default=DEFAULT_MAX_PEAKS, metadata=_opt(
        "peaks of the probability map per slice that become candidates (fewer remain where refined onto one)"))
    min_score: float = field(default=0.0, metadata=_opt("lowest candidate score reported"))
    window: Optional[str] = field(default=None, metadata=_opt(
        "CT window for DICOM/NIfTI: lung, abdomen, bone, brain, W,L or dicom (each file's own); default: the "
        "checkpoint's"))
    spacing: str = field(default="native", metadata=_opt(
        "auto: resample each slice to the checkpoint's training pixel spacing where both are known",
        choices=("native", "auto")))
    plane: str = field(default="auto", metadata=_opt(
        "plane to slice NIfTI volumes in (auto: the acquisition plane)", choices=("auto", "axial", "coronal",
                                                                               "sagittal")))
    allow_modality: Tuple[str, ...] = field(default=(), metadata=_opt(
        "DICOM modalities other than CT to scan anyway (scaled per volume, never HU-windowed)", nargs="+"))
    overlays: int = field(default=3, metadata=_opt("overlay PNGs per input (the slices of its top candidates)"))
    device: str = field(default="auto", metadata=_opt("auto, cpu, cuda, ..."))
    progress: bool = field(default=True, metadata=_opt("progress bar over slices"))

    def __post_init__(self) -> None:
        if self.refine not in REFINE_MODES:
            raise ValueError(f"unknown refine mode {self.refine!r}: use one of {REFINE_MODES}")
        if self.spacing not in ("native", "auto"):
            raise ValueError(f"--spacing must be native or auto, got {self.spacing!r}")
        if self.stride < 1 or self.max_candidates < 1:
            raise ValueError(f"stride and max_candidates must be >= 1, got {self.stride} and {self.max_candidates}")
        if self.cam_method is not None and self.cam_method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {self.cam_method!r}: use one of {sorted(CAM_METHODS)}")
        self.allow_modality = tuple(self.allow_modality)
        self.cam_layers = tuple(self.cam_layers) if self.cam_layers else None

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "ScanSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown scan settings {unknown}")
        return cls(**values)

    @classmethod
    def for_weights(cls, checkpoint: Union[str, Path], **given: Any) -> "ScanSettings":
        """The defaults, then the scan settings chosen on val that the weights carry (shipped weights do), then
        ``given``."""
        from ..base import load_checkpoint

        return cls.from_dict({**(load_checkpoint(checkpoint).get("scan") or {}), **given})


@dataclass
class ScanResult:
    """What a scan found: one row per candidate, one row per input, and the inputs that failed."""

    candidates: pd.DataFrame
    images: pd.DataFrame
    errors: List[InputError]
    seconds_per_slice: float
    settings: ScanSettings
    checkpoint: str
    out: Optional[Path] = None
    notes: List[str] = field(default_factory=list)


def _spacing_factor(volume: Volume, cfg: TrainConfig, settings: ScanSettings, notes: List[str]) -> float:
    if settings.spacing != "auto":
        return 1.0
    if volume.geometry is None or cfg.pixel_spacing is None:
        missing = "the input has no pixel spacing" if volume.geometry is None else "the checkpoint records none"
        notes.append(f"{volume.name}: --spacing auto left it at its native size ({missing})")
        return 1.0
    return float(np.mean(volume.geometry.pixel_spacing)) / float(cfg.pixel_spacing)


def _scan_volume(volume: Volume, scorer: WindowScorer, cfg: TrainConfig, settings: ScanSettings,
                 tick: Callable[[], None], notes: List[str]) -> Tuple[List[Dict[str, Any]], np.ndarray, float]:
    """(candidate rows, the probability map (S, H, W) uint8 for volumes or (H, W) float32, seconds)."""
    extra = _spacing_factor(volume, cfg, settings, notes)
    maps = np.zeros((volume.n_slices, *volume.shape), np.uint8) if volume.is_volume else None
    rows: List[Dict[str, Any]] = []
    start, pixel = time.perf_counter(), None
    spacing = float(np.mean(volume.geometry.pixel_spacing)) if volume.geometry is not None else None
    for item in iter_slices(volume, in_chans=cfg.in_chans):
        wmap, pixel, candidates = scorer.candidates(item.image, refine=settings.refine, radius=settings.radius,
                                                    max_peaks=settings.max_candidates, threshold=settings.min_score,
                                                    cam_peaks=settings.cam_peaks, cam_method=settings.cam_method,
                                                    cam_layers=settings.cam_layers, extra_scale=extra)
        if wmap.padded and item.index == 0:
            notes.append(f"{volume.name}: smaller than the model's {scorer.window}-px window; padded with black")
        for c in candidates:
            row = {"path": volume.name, "series_uid": volume.series_uid, "slice": item.index, "x": round(c.x, 1),
                   "y": round(c.y, 1), "score": c.score, "size_px": round(c.size_px, 1)}
            if volume.geometry is not None:
                row.update(zip(("x_mm", "y_mm", "z_mm"), np.round(volume.geometry.world(item.index, c.y, c.x), 2)))
                row["space"] = volume.geometry.space
                row["diameter_mm"] = round(2 * np.sqrt(c.size_px / np.pi) * spacing, 2)
            rows.append(row)
        if maps is not None:
            maps[item.index] = np.round(np.clip(pixel, 0, 1) * 255).astype(np.uint8)
        tick()
    seconds = time.perf_counter() - start
    if volume.nonfinite:
        first = min(volume.nonfinite)
        notes.append(f"{volume.name}: {sum(volume.nonfinite.values())} NaN/inf voxels in {len(volume.nonfinite)} "
                     f"slice(s) (first: slice {first}) were set to their slice's lowest (NaN, -inf) or highest "
                     "(+inf) finite value before scanning")
    return rows, (maps if maps is not None else pixel), seconds


def scan(checkpoint: Union[str, Path, None], inputs: Sequence[Union[str, Path]], *, out: Union[str, Path, None] = None,
         settings: Optional[ScanSettings] = None, model: Optional[torch.nn.Module] = None,
         cfg: Optional[TrainConfig] = None, on_progress: Optional[Callable[[int, int], None]] = None,
         on_volume: Optional[Callable[[Volume, List[Dict[str, Any]], np.ndarray], None]] = None,
         if_exists: str = "error", within: Optional[Path] = None) -> ScanResult:
    """Scan image files, DICOM files, DICOM series folders and NIfTI volumes with a checkpoint (or a ``model`` and
    its ``cfg``); with ``out``, write candidates.csv, images.csv, maps/, overlays/ and report.md there.
    ``on_progress(slices done, slices in all)`` follows the scan; ``on_volume(volume, candidate rows, map)`` gets
    each input as it finishes, its map in the slices' own orientation (what a viewer shows). A non-empty ``out``
    is refused unless ``if_exists`` is ``overwrite`` or ``resume`` (skip the inputs an earlier scan there
    finished); ``within``: files whose real path leaves that folder are refused (a link out of it)."""
    out = Path(out) if out is not None else None
    prepare_out(out, if_exists)  # before any model or input is loaded
    if settings is None:
        settings = ScanSettings.for_weights(checkpoint) if checkpoint is not None else ScanSettings()
    device = resolve_device(settings.device)
    if model is None or cfg is None:
        model, cfg = load_model(checkpoint, device)
    fast = optimize_for_inference(copy.deepcopy(model).to(device))  # BN folded, channels-last: same scores
    if settings.cam_layers:
        resolve_layers(fast, settings.cam_layers)  # a wrong layer name stops here, before any input is read
    scorer = WindowScorer(fast, cfg, stride=settings.stride, device=device, exact=settings.exact)
    settings.radius = settings.radius or nms_radius(cfg.native_size or cfg.img_size)  # original pixels
    volumes = open_inputs(inputs, window=settings.window or cfg.window, allow_modality=settings.allow_modality,
                          plane=settings.plane, within=within)
    writer = ScanWriter(out, cfg, settings, str(checkpoint or cfg.model))
    writer.start(if_exists)
    notes: List[str] = []
    total = sum(v.n_slices for v in volumes if isinstance(v, Volume))
    with tqdm(total=total, desc="scan", unit="slice", disable=None if settings.progress else True) as bar:

        def tick() -> None:
            bar.update(1)
            if on_progress is not None:
                on_progress(bar.n, total)

        for volume in volumes:
            if isinstance(volume, InputError):
                writer.failed(volume.name, volume.message)
                continue
            if writer.done(volume):  # --resume: finished by the earlier scan into this folder
                bar.update(volume.n_slices)
                continue
            try:
                rows, maps, seconds = _scan_volume(volume, scorer, cfg, settings, tick, notes)
                writer.add(volume, rows, maps, seconds)
            except Exception as e:  # noqa: BLE001 - one bad input (a slice, a header, a map) stops only itself
                writer.failed(volume.name, failure(volume.name, e), series_uid=volume.series_uid)
                continue
            if on_volume is not None:
                on_volume(volume, rows, maps)
    candidates, images, errors, seconds_per_slice = writer.finish(notes)
    return ScanResult(candidates, images, errors, seconds_per_slice, settings, str(checkpoint or cfg.model), out,
                      notes)


def failure(name: str, error: Exception) -> str:
    """One line for an input that failed: our readers' messages name the file already; anything else (a library's
    error on a damaged file, memory) is named here."""
    if isinstance(error, ImageReadError):
        return str(error)
    if isinstance(error, MemoryError):
        return f"{name}: not enough memory to scan it ({error or 'MemoryError'}); is it far larger than a CT series?"
    return f"{name}: could not be scanned ({type(error).__name__}: {error})"
