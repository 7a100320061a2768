"""``rensenet view``: start the local viewer (see rensenet.viewer.app)."""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from .args import add_weights_arguments, weights_of


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="a local web app: open a series, volume or images, scan, and read the findings",
                       description="Start a local web app (http://127.0.0.1:PORT/) that opens DICOM series, NIfTI "
                                   "volumes and images from PATH or uploads, scans them in the background and shows "
                                   "the slices with the lesion-probability map and numbered candidates. A "
                                   "single-user tool: no accounts, no TLS (docs/view.md, Security).")
    add_weights_arguments(p)
    p.add_argument("path", nargs="?", default=None, metavar="PATH",
                   help="folder whose files the page may open (without it, files are uploaded)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the browser")
    p.add_argument("--out", default="rensenet-view", help="folder the scans write into")
    p.add_argument("--window", default=None, help="CT window for DICOM/NIfTI (default: the checkpoint's)")
    p.add_argument("--allow-modality", nargs="+", default=(), metavar="MODALITY",
                   help="DICOM modalities other than CT to scan anyway")
    p.add_argument("--max-upload-mb", type=float, default=512.0, help="largest upload accepted")


def _addresses(host: str) -> list:
    """(family, address) pairs ``host`` resolves to; one line when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ValueError(f"--host {host}: not an address this machine can listen on ({e})") from None
    return [(info[0], info[4][0]) for info in infos]


def _is_loopback(host: str) -> bool:
    return all(ipaddress.ip_address(address.split("%")[0]).is_loopback for _, address in _addresses(host))


def free_port(host: str) -> int:
    family, address = _addresses(host)[0]
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
            return int(s.getsockname()[1])
    except OSError as e:
        raise ValueError(f"--host {host}: cannot listen there ({e}); use 127.0.0.1 (the default)") from None


def run(a: argparse.Namespace) -> None:
    import shutil

    import uvicorn

    from ..base import load_model
    from ..scanning.run import ScanSettings
    from ..viewer.app import create_app
    from ..viewer.guards import allowed_hosts
    from ..viewer.jobs import JobRunner

    root = Path(a.path) if a.path else None
    if root is not None and not root.is_dir():
        raise ValueError(f"{root}: not a folder; give the folder whose series, volumes or images to open")
    port = a.port or free_port(a.host)  # a host it cannot listen on stops here, before anything is made
    checkpoint = weights_of(a)
    model, cfg = load_model(checkpoint)
    settings = ScanSettings.for_weights(checkpoint, window=a.window, allow_modality=tuple(a.allow_modality),
                                        progress=False, overlays=3)  # the weights' val-chosen settings
    app = create_app(JobRunner(model, cfg, str(checkpoint), Path(a.out), settings), root=root,
                     max_upload_mb=a.max_upload_mb, hosts=allowed_hosts(a.host))
    if not _is_loopback(a.host):
        print(f"rensenet view: WARNING: listening on {a.host}, not only on this machine: anyone who can reach it "
              "can see the patient images it opens", file=sys.stderr)
    url = f"http://{a.host if ':' not in a.host else f'[{a.host}]'}:{port}/"
    print(f"rensenet view: {url}  (model {cfg.model} from {checkpoint}; Ctrl+C to stop)", flush=True)
    if a.open:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    try:
        uvicorn.run(app, host=a.host, port=port, log_level="warning")
    finally:
        shutil.rmtree(app.state.uploads, ignore_errors=True)  # also when the server could not start
