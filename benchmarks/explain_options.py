"""Which CAM method and target layer localise small lesions best? Prints a table of localisation scores.

    python benchmarks/explain_options.py --checkpoint RUN/best.pt --data ../shared/data/lung-nodule-ct --split val

Choose on val, report on test. Faithfulness (ROAD) is left out here for speed; `rensenet explain` reports it.
"""
from __future__ import annotations

import argparse
import time

from rensenet.explanation import explain_model

OPTIONS = [
    ("gradcam", ["fusion"]),
    ("gradcam++", ["fusion"]),
    ("hirescam", ["fusion"]),
    ("layercam", ["fusion"]),
    ("gradcam", ["stages.2.block"]),
    ("gradcam", ["stages.1.block"]),
    ("hirescam", ["stages.1.block"]),
    ("layercam", ["stages.1.block"]),
    ("layercam", ["stages.0.block"]),
    ("layercam", ["ecm.stages.0"]),
    ("layercam", ["ecm.stages.0.conv2"]),
    ("layercam", ["stages.1.block", "stages.2.block", "fusion"]),
    ("layercam", ["stages.0.block", "stages.1.block", "stages.2.block", "fusion"]),
    ("layercam", ["ecm.stages.0.conv2", "ecm.stages.1.conv2", "fusion"]),
    ("layercam", ["stages.1.block", "ecm.stages.0.conv2", "fusion"]),
    ("hirescam", ["stages.0.block"]),
    ("hirescam", ["stages.2.block"]),
    ("hirescam", ["ecm.stages.0"]),
    ("hirescam", ["ecm.stages.0.conv2"]),
    ("hirescam", ["stages.1.block", "ecm.stages.0.conv2"]),
    ("hirescam", ["stages.0.block", "stages.1.block"]),
    ("layercam", ["stages.0.block", "stages.1.block"]),
    ("gradcam++", ["stages.1.block"]),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--only", type=int, nargs="*", help="indices of OPTIONS to run")
    a = p.parse_args()
    print("| method | target layers | pointing game | energy in lesion | energy lift | IoU@0.5 | chance pointing | s |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (method, layers) in enumerate(OPTIONS):
        if a.only and i not in a.only:
            continue
        t = time.time()
        e = explain_model(a.checkpoint, a.data, split=a.split, method=method, target_layers=layers,
                          faithfulness=False, n_boot=200)
        s = e.localization
        print(f"| {method} | {', '.join(layers)} | {s['pointing_game']['value']:.3f} | "
              f"{s['energy_in_lesion']['value']:.3f} | {s['energy_lift']['value']:.2f} | {s['iou']['value']:.3f} | "
              f"{s['chance']['pointing_game']:.3f} | {time.time() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
