"""What a newcomer reads first: ``rensenet --version`` and help texts that say what the flags do."""
from __future__ import annotations

import warnings
from importlib.metadata import version

import pytest

from rensenet.base import load_model, weights_file
from rensenet.cli.main import build_parser
from rensenet.demo import sample_data_dir
from rensenet.scanning.predict import predict_files


def test_version_and_help_texts(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"rensenet {version('rensenet')}"
    scan = build_parser()._subparsers._group_actions[0].choices["scan"]
    helps = {a.dest: a.help for a in scan._actions}
    assert helps["progress"] == "no progress bar over slices"  # the flag is --no-progress
    assert helps["stride"].endswith("(default: the weights' own, else 8)")  # shipped weights carry their own
    assert helps["split"] and helps["force"] and helps["resume"]
    view = build_parser()._subparsers._group_actions[0].choices["view"]
    assert "single-user tool" in view.description


def test_a_shrinking_warning_names_the_callers_line() -> None:
    model, cfg = load_model(weights_file(tag="rensenet_s.lidc_nodule_window"))
    slice_ = sorted((sample_data_dir("kidney-stone-scans") / "images").glob("*.jpg"))[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_files(model, cfg, [slice_])
    [warning] = [w for w in caught if "shrunk" in str(w.message)]
    assert warning.filename == __file__  # not torch/utils/_contextlib.py
