"""The model card of a shipped weight file (``docs/models/<name>.md``), written by ``train_zoo.py``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict


def _ci(m: Dict[str, float]) -> str:
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def write_card(path: Path, e: Dict[str, Any], recipe: Dict[str, Any]) -> Path:
    name = f"{e['architecture']}.{e['tag']}"
    m, scan = e["metrics"], e["metrics"].get("scans")
    w, h = m["windows"], m["heatmaps"]
    scale = f" at {e['scale']:g}x" if e["scale"] != 1 else ""
    context = recipe["train"].get("context", 0)
    window = e["window"] or "unknown (the source images came windowed): DICOM and NIfTI inputs need --window"
    lines = [
        f"# `{name}`", "",
        f"{e['description']} `rensenet_s` (0.42 M parameters), {e['file']} ({e['bytes'] / 1e6:.2f} MB, "
        + (f"float16, logits within {e['max_logit_diff_to_float32']:.1e} of float32" if e["storage"] == "float16" else
           f"float32: in float16 the logits moved by {e['float16_max_logit_diff']:.1e}, more than 1e-3")
        + f"), sha256 `{e['sha256']}`.", "",
        "```python",
        f'model = timm.create_model("{name}", pretrained=True)   # offline, from the package',
        "```", "",
        f"```bash\nrensenet {'scan' if scan else 'predict'} --model {name} ...\n```", "",
        "## Data", "",
        f"`{recipe['task']}` of the rensenet benchmark data, train split only; chosen on val; scored on test. "
        f"Source: {e['license']} (the licence of the data the weights were trained on).", "",
        "## Recipe", "",
        f"`{e['command']}` (run by `python benchmarks/train_zoo.py --tags {e['tag']}`; best epoch {e['epoch']}, on "
        f"{e['trained_on']}, {e['date']}). The paper's recipe: SGD, momentum 0.9, lr 0.01, weight decay 1e-4, cosine "
        "schedule, batch 32, flips and lesion-safe shifts; three-head loss 1.0 / 0.3 / 0.3."
        + (" Whole images: windows sampled on the fly, hard negatives mined after each epoch, best.pt by val CPM."
           if scan else "")
        + (f" Each window seen with {context} px of context (only its cells pooled, no lesion-safe shift): the "
           "dense map of `rensenet scan` is what was trained; a bare window (timm's `input_size`) scores without "
           "that context." if context else ""), "",
        f"Inputs: {e['input_size'][0]} channel, {e['input_size'][1]} px windows{scale}, normalised with mean "
        f"{e['mean'][0]:.4f} and std {e['std'][0]:.4f} of [0, 1] pixels; classes {e['label_names']}; CT window "
        f"{window}.", "",
        "## Test metrics (95 % patient-bootstrap intervals)", "",
    ]
    if scan:
        sens = scan["sens_at_fp"]
        choice = m.get("scan_choice")
        if choice:
            lines += [f"Scan settings chosen on val, carried by the weights (`rensenet scan` uses them): "
                      f"`{choice['chosen']}`.", "", "| val: settings | CPM | sensitivity at 1/8 .. 8 FP |", "|---|---|---|"]
            lines += [f"| `{r['settings']}` | {r['cpm']['value']:.3f} | "
                      + " / ".join(f"{v['value']:.2f}" for v in r["sens_at_fp"].values()) + " |" for r in choice["tried"]]
            lines += [""]
        lines += [f"Whole images ({scan['task']}, {scan['n_images']} images, {scan['n_lesions']} lesions, the "
                  f"chosen settings, {scan['seconds_per_slice']:.3f} s per image on the CPU above):", "",
                  f"- CPM {_ci(scan['cpm'])}",
                  "- sensitivity at " + ", ".join(f"{r} FP/image {v['value']:.3f}" for r, v in sens.items()),
                  "- by lesion size: " + ", ".join(f"{r['tercile']} ({r['min_px']:.0f}-{r['max_px']:.0f} px) "
                                                   f"CPM {r['cpm']:.3f}" for r in scan["by_lesion_size"]), ""]
    lines += [f"Windows ({w['task']}, {w['n']} windows of {w['n_patients']} patients): AUC {_ci(w['auc'])}, "
              f"sensitivity {_ci(w['sensitivity'])}, specificity {_ci(w['specificity'])}.", "",
              f"Heatmaps ({h['method']} on {', '.join(h['target_layers'])}, {w['task']} test lesions): pointing "
              f"game {_ci(h['pointing_game'])} (chance {h['chance_pointing_game']:.3f}), energy lift "
              f"{_ci(h['energy_lift'])} (1.0 = uniform).", "",
              "## Known limits", "",
              f"- Trained on {recipe['task']} only: "
              + ("96 x 96 axial views of LIDC-IDRI nodules, lung window" if "lidc" in e["tag"] else
                 "coronal non-contrast slices of one centre's kidney-stone studies")
              + "; other scanners, reconstructions, windows or body regions are untested.",
              f"- Windows of {e['input_size'][1]} px at the source's pixel size; `--spacing auto` cannot help, "
              "as the training pixel spacing is not known.",
              "- A research model, not for clinical use: no regulatory clearance, no prospective validation.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
