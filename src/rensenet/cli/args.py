"""Command-line arguments generated from a config dataclass, so a setting is declared once (with its help)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Dict, Type


WEIGHTS_OWN = "the weights' own, else "


def _unwrap_optional(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def add_config_arguments(parser: argparse.ArgumentParser, cls: Type, *, config: bool = True,
                         from_weights: bool = False) -> None:
    """One ``--flag`` per field of ``cls`` that has ``help`` metadata and is not ``derived``; with ``config``,
    ``--config FILE`` reads the same settings from JSON. Flags given on the command line win over the file.
    ``from_weights``: the weights may carry their own defaults (scan settings chosen on val), and help says so."""
    hints = typing.get_type_hints(cls)
    if config:
        parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                            help="JSON file of these settings (what `rensenet benchmark` gives its runs); flags "
                                 "override it")
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("derived") or "help" not in meta:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        tp = _unwrap_optional(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        kw: Dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS)
        shown = "" if default in (None, dataclasses.MISSING) or meta.get("required") else \
            f" (default: {WEIGHTS_OWN if from_weights else ''}{default})"
        if tp is bool and default is True:
            flag, kw["action"] = "--no-" + f.name.replace("_", "-"), "store_false"
            shown = ""
        elif tp is bool and default is False:
            kw["action"] = "store_true"
            shown = ""
        elif tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif meta.get("json"):
            kw["type"] = json.loads
        else:
            elem = typing.get_args(tp)[0] if typing.get_origin(tp) in (list, tuple) else tp
            kw["type"] = elem
            if "nargs" in meta:
                kw["nargs"] = meta["nargs"]
            if "choices" in meta:
                kw["choices"] = meta["choices"]
        kw["help"] = (f"no {meta['help']}" if kw.get("action") == "store_false" else meta["help"]) + shown + \
            (" (required)" if meta.get("required") else "")  # --no-progress: "no progress bar over slices"
        parser.add_argument(flag, **kw)


def config_from_args(args: argparse.Namespace, cls: Type, *, only_given: bool = False):
    """The config: ``--config``'s JSON, then every flag given on the command line; required fields checked.
    ``only_given`` returns the given settings as a dict instead (for defaults that come from elsewhere)."""
    values: Dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        try:
            values = json.loads(Path(args.config).read_text())
        except FileNotFoundError:
            raise ValueError(f"{args.config}: config file not found") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{args.config}: not valid JSON ({e})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{args.config}: a config file holds one JSON object of settings")
    names = {f.name for f in dataclasses.fields(cls)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    if only_given:
        return values
    missing = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(cls)
               if f.metadata.get("required") and f.name not in values]
    if missing:
        raise ValueError(f"the following settings are required: {', '.join(missing)}")
    return cls.from_dict(values)


def add_weights_arguments(parser: argparse.ArgumentParser, *, multiple: bool = False) -> None:
    """``--checkpoint FILE`` or ``--model TAG`` (weights shipped in the package), one of them."""
    group = parser.add_mutually_exclusive_group(required=True)
    nargs = "+" if multiple else None
    group.add_argument("--checkpoint", nargs=nargs, metavar="FILE", help="checkpoint written by `rensenet train`"
                       + ("; several also give comparison.png" if multiple else ""))
    group.add_argument("--model", dest="weights", nargs=nargs, metavar="TAG",
                       help="weights shipped in the package, e.g. rensenet_s.kidney_stone_scan "
                            "(timm.list_pretrained('rensenet*'))")


def weights_of(args: argparse.Namespace):
    """The weight file(s) the command line names: checkpoints as given, shipped tags verified."""
    from ..base import weights_file

    if args.checkpoint is not None:
        return [Path(c) for c in args.checkpoint] if isinstance(args.checkpoint, list) else Path(args.checkpoint)
    if isinstance(args.weights, list):
        return [weights_file(tag=t) for t in args.weights]
    return weights_file(tag=args.weights)
