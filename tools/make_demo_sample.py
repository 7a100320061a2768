"""Cut the embedded samples (src/rensenet/data/sample/<task>) from ../shared/data.

    python tools/make_demo_sample.py [--src ../shared/data]

- lung-nodule-ct: whole patients drawn at random (seed 0) from each split: 120 train, 30 val, 50 test.
- lung-nodule-scans: the whole-image views of exactly those patients, in the same splits.
- kidney-stone-scans: every test study (so a test on the sample scores what a test on the full split scores),
  and whole studies drawn at random (seed 0): 12 train, 3 val.
- kidney-stone-ct: the windows of every test study (what the shipped kidney window weights are scored on).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

DEST = Path(__file__).resolve().parents[1] / "src" / "rensenet" / "data" / "sample"
LIDC = """Source: LIDC-IDRI, The Cancer Imaging Archive, license CC BY 3.0.
Armato SG III et al., "The Lung Image Database Consortium (LIDC) and Image Database Resource Initiative (IDRI):
a completed reference database of lung nodules on CT scans", Medical Physics 38(2):915-931, 2011.
Data: doi:10.7937/K9/TCIA.2015.LO9QL9SX.
"""
ATTRIBUTION = {
    "lung-nodule-ct": """# Demo sample: lung-nodule-ct (LIDC-IDRI)

{n} images of {p} patients ({splits}), whole patients drawn at random (seed 0) from the splits of the
rensenet benchmark task `lung-nodule-ct` by `tools/make_demo_sample.py`. 48 x 48 axial CT windows, lung
window, with or without a nodule; masks are the 50 % consensus of up to four radiologists.

""" + LIDC,
    "lung-nodule-scans": """# Demo sample: lung-nodule-scans (LIDC-IDRI)

{n} images of {p} patients ({splits}): the 96 x 96 whole-image views of the benchmark task `lung-nodule-scans`
for exactly the patients of the `lung-nodule-ct` sample, in the same splits (`tools/make_demo_sample.py`). Each
view holds its nodule at a random position; masks are the 50 % consensus of up to four radiologists.

""" + LIDC,
    "kidney-stone-ct": """# Sample: kidney-stone-ct test split (TEZ_ROI_AUG)

{n} 64 x 64 windows of the {p} test studies ({splits}) of the benchmark task `kidney-stone-ct`, with or without a
stone (`tools/make_demo_sample.py`): the whole test split, so a test on it scores what a test on the full split
scores.

Source: the Roboflow export "TEZ_ROI_AUG" (license CC BY 4.0) of the images of Yildirim K, Bozdag PG, Talo M,
Yildirim O, Karabatak M, Acharya UR, "Deep learning model for automated kidney stone detection using coronal CT
images", Computers in Biology and Medicine 135:104569, 2021.
""",
    "kidney-stone-scans": """# Demo sample: kidney-stone-scans (TEZ_ROI_AUG)

{n} coronal non-contrast CT slices (391 x 320) of {p} studies ({splits}) from the benchmark task
`kidney-stone-scans`, cut by `tools/make_demo_sample.py`: every test study, and whole train and val studies drawn
at random (seed 0). Every stone is boxed; the masks are the boxes.

Source: the Roboflow export "TEZ_ROI_AUG" (license CC BY 4.0) of the images of Yildirim K, Bozdag PG, Talo M,
Yildirim O, Karabatak M, Acharya UR, "Deep learning model for automated kidney stone detection using coronal CT
images", Computers in Biology and Medicine 135:104569, 2021.
""",
}


def _patients(df: pd.DataFrame, split: str, n: int, rng: np.random.Generator) -> set:
    patients = sorted(df.loc[df.split == split, "patient_id"].unique())
    return set(patients) if n >= len(patients) else set(rng.choice(patients, size=n, replace=False))


def write_sample(src: Path, task: str, rows: pd.DataFrame, splits) -> None:
    dest = DEST / task
    if dest.exists():
        shutil.rmtree(dest)
    for col in ("path", "mask_path"):
        for rel in rows[col]:
            if rel:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / task / rel, dest / rel)
    rows.to_csv(dest / "manifest.csv", index=False)
    counts = ", ".join(f"{s} {rows[rows.split == s].patient_id.nunique()}" for s in splits)
    (dest / "ATTRIBUTION.md").write_text(ATTRIBUTION[task].format(n=len(rows), p=rows.patient_id.nunique(),
                                                                  splits=counts))
    print(f"wrote {len(rows)} images to {dest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    read = lambda task: pd.read_csv(args.src / task / "manifest.csv", keep_default_na=False)  # noqa: E731

    lung = read("lung-nodule-ct")
    rng = np.random.default_rng(0)
    chosen = {s: _patients(lung, s, n, rng) for s, n in {"train": 120, "val": 30, "test": 50}.items()}
    keep = lambda df: pd.concat([df[(df.split == s) & df.patient_id.isin(p)] for s, p in chosen.items()])  # noqa: E731
    write_sample(args.src, "lung-nodule-ct", keep(lung), chosen)
    write_sample(args.src, "lung-nodule-scans", keep(read("lung-nodule-scans")), chosen)

    kidney = read("kidney-stone-scans")
    rng = np.random.default_rng(0)
    studies = {s: _patients(kidney, s, n, rng) for s, n in {"train": 12, "val": 3, "test": 10**6}.items()}
    rows = pd.concat([kidney[(kidney.split == s) & kidney.patient_id.isin(p)] for s, p in studies.items()])
    write_sample(args.src, "kidney-stone-scans", rows, studies)
    windows = read("kidney-stone-ct")
    write_sample(args.src, "kidney-stone-ct", windows[windows.split == "test"], {"test": None})


if __name__ == "__main__":
    main()
