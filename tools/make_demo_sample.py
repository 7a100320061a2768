"""Cut the embedded demo sample (src/rensenet/data/sample/lung-nodule-ct) from ../shared/data/lung-nodule-ct.

    python tools/make_demo_sample.py [--src ../shared/data/lung-nodule-ct]

Whole patients are drawn at random (seed 0) from each split: 120 train, 30 val, 50 test.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

PATIENTS = {"train": 120, "val": 30, "test": 50}
DEST = Path(__file__).resolve().parents[1] / "src" / "rensenet" / "data" / "sample" / "lung-nodule-ct"

ATTRIBUTION = """# Demo sample: lung-nodule-ct (LIDC-IDRI)

{n} images of {p} patients ({splits}), whole patients drawn at random (seed 0) from the splits of the
rensenet benchmark task `lung-nodule-ct` by `tools/make_demo_sample.py`. 48 x 48 axial CT windows, lung
window, with or without a nodule; masks are the 50 % consensus of up to four radiologists.

Source: LIDC-IDRI, The Cancer Imaging Archive, license CC BY 3.0.
Armato SG III et al., "The Lung Image Database Consortium (LIDC) and Image Database Resource Initiative (IDRI):
a completed reference database of lung nodules on CT scans", Medical Physics 38(2):915-931, 2011.
Data: doi:10.7937/K9/TCIA.2015.LO9QL9SX.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/lung-nodule-ct")
    args = parser.parse_args()
    df = pd.read_csv(args.src / "manifest.csv", keep_default_na=False)
    rng = np.random.default_rng(0)
    parts = []
    for split, n in PATIENTS.items():
        patients = sorted(df.loc[df.split == split, "patient_id"].unique())
        chosen = set(rng.choice(patients, size=n, replace=False))
        parts.append(df[(df.split == split) & df.patient_id.isin(chosen)])
    sample = pd.concat(parts)
    if DEST.exists():
        shutil.rmtree(DEST)
    for col in ("path", "mask_path"):
        for rel in sample[col]:
            if rel:
                (DEST / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(args.src / rel, DEST / rel)
    sample.to_csv(DEST / "manifest.csv", index=False)
    counts = ", ".join(f"{s} {sample[sample.split == s].patient_id.nunique()}" for s in PATIENTS)
    (DEST / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(n=len(sample), p=sample.patient_id.nunique(), splits=counts))
    print(f"wrote {len(sample)} images to {DEST}")


if __name__ == "__main__":
    main()
