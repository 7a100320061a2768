"""The viewer's guards against a hostile web page and a careless client, through FastAPI's TestClient: DNS
rebinding (the Host check), cross-site requests (token, Origin, Sec-Fetch-Site, JSON), links out of the served
folder, decompression bombs among uploads, and the per-client queue of scans."""
from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from rensenet.base import load_model, weights_file
from rensenet.demo import sample_data_dir
from rensenet.scanning.run import ScanSettings
from rensenet.viewer.app import MAX_JOBS_PER_CLIENT, create_app
from rensenet.viewer.guards import host_name
from rensenet.viewer.jobs import JobRunner

from test_volumes import _nifti_header_only

TAG = "rensenet_s.kidney_stone_scan"
ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    """The app on the shipped kidney weights, serving ``cases/`` (a kidney slice; ``sub/`` holds a link to an image
    outside it, ``away`` links to a folder outside it)."""
    base = tmp_path_factory.mktemp("guards")
    root, outside = base / "cases", base / "private"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    slice_ = sorted((sample_data_dir("kidney-stone-scans") / "images").glob("*.jpg"))[0]
    shutil.copy(slice_, root / "kidney.jpg")
    shutil.copy(slice_, outside / "secret.jpg")
    (root / "sub" / "l.jpg").symlink_to(outside / "secret.jpg")
    (root / "away").symlink_to(outside, target_is_directory=True)
    checkpoint = weights_file(tag=TAG)
    model, cfg = load_model(checkpoint)
    settings = ScanSettings.for_weights(checkpoint, window="abdomen", progress=False, overlays=0)
    runner = JobRunner(model, cfg, str(checkpoint), base / "out", settings)
    app = create_app(runner, root=root, max_upload_mb=4)
    with TestClient(app, base_url=ORIGIN) as client:
        token = client.get("/api/info").json()["token"]
        yield {"client": client, "runner": runner, "app": app, "headers": {"X-Rensenet-Token": token}}


def _scan(viewer, body: dict, **headers) -> object:
    return viewer["client"].post("/api/scans", content=json.dumps(body),
                                 headers={"Content-Type": "application/json", **viewer["headers"], **headers})


def _finished(viewer, job_id: str) -> dict:
    for _ in range(400):
        job = viewer["client"].get(f"/api/scans/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    pytest.fail(f"scan {job_id} did not finish")


def test_only_the_host_names_it_was_started_on_are_answered(viewer) -> None:
    """DNS rebinding: a page on evil.example that rebinds its name to 127.0.0.1 sends Host: evil.example."""
    client = viewer["client"]
    for host in ("evil.example:8000", "evil.example", "127.0.0.1.evil.example:8000", ""):
        answer = client.get("/api/browse", headers={"Host": host})
        assert answer.status_code == 400 and "not a name this viewer was started on" in answer.json()["detail"]
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"):
        assert client.get("/api/browse", headers={"Host": host}).status_code == 200
    assert [host_name(h) for h in ("[::1]:80", "a.b:1", "::1", "Localhost")] == ["::1", "a.b", "::1", "localhost"]


def test_state_changing_calls_need_the_page_of_this_session(viewer) -> None:
    """A cross-site "simple" request (text/plain, no preflight) once started a scan, and a cross-site multipart
    upload stored a file. Each of these is refused and starts or stores nothing; the page's own request passes."""
    client, runner, uploads = viewer["client"], viewer["runner"], viewer["app"].state.uploads
    jobs = len(runner.jobs)
    body = json.dumps({"path": "kidney.jpg"})
    refused = [
        ({"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403, "cross-site request from"),
        ({"Origin": "http://evil.example", "Content-Type": "application/json", **viewer["headers"]}, 403,
         "cross-site request from"),
        ({"Origin": "null", "Content-Type": "application/json", **viewer["headers"]}, 403, "cross-site"),
        ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json", **viewer["headers"]}, 403,
         "cross-site request (cross-site)"),
        ({"Content-Type": "application/json"}, 403, "missing or wrong session token"),
        ({"Content-Type": "application/json", "X-Rensenet-Token": "guess"}, 403, "missing or wrong session token"),
        ({"Origin": ORIGIN, "Content-Type": "text/plain", **viewer["headers"]}, 415, "Content-Type: application/json"),
    ]
    for headers, status, words in refused:
        answer = client.post("/api/scans", content=body, headers=headers)
        assert answer.status_code == status and words in answer.json()["detail"], headers
    files = [("files", ("x.png", b"\x89PNG not really"))]
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site", **viewer["headers"]}, {}):
        assert client.post("/api/upload", files=files, headers=headers).status_code == 403
    assert len(runner.jobs) == jobs and list(uploads.iterdir()) == []
    mine = _scan(viewer, {"path": "kidney.jpg"}, Origin=ORIGIN, **{"Sec-Fetch-Site": "same-origin"})
    assert mine.status_code == 200 and _finished(viewer, mine.json()["id"])["status"] == "done"


def test_a_link_out_of_the_served_folder_is_never_followed(viewer) -> None:
    client = viewer["client"]
    assert client.get("/api/browse", params={"path": "away"}).status_code == 403
    assert _scan(viewer, {"path": "sub/l.jpg"}).status_code == 403
    assert _scan(viewer, {"path": "away"}).status_code == 403
    job = _finished(viewer, _scan(viewer, {"path": "sub"}).json()["id"])  # a folder holding the link
    assert job["status"] == "failed" and job["volumes"] == []
    assert [e["name"] for e in job["errors"]] == ["l.jpg"]
    assert "a link to a file outside the folder being served; not read" in job["errors"][0]["message"]
    assert client.get(f"/api/scans/{job['id']}/volumes/0/slices/0").status_code == 404


def test_an_uploaded_decompression_bomb_is_refused_unpacked(viewer) -> None:
    """2 MB of gzip whose header claims a 2 GiB volume: refused from its header, nothing unpacked."""
    before = set(Path(tempfile.gettempdir()).glob("rensenet-*.nii"))
    with tempfile.TemporaryDirectory() as tmp:
        bomb = _nifti_header_only(Path(tmp) / "bomb.nii.gz", (2048, 1024, 1024), np.uint8, b"\0" * 2_000_000)
        payload = bomb.read_bytes()
    assert len(payload) < 100_000 and len(gzip.decompress(payload)) > 2_000_000
    upload = viewer["client"].post("/api/upload", files=[("files", ("bomb.nii.gz", payload))],
                                   headers=viewer["headers"])
    assert upload.status_code == 200
    job = _finished(viewer, _scan(viewer, {"upload": upload.json()["upload"]}).json()["id"])
    assert job["status"] == "failed" and "its header declares 2048 x 1024 x 1024 voxels (2.0 GiB)" in \
        job["errors"][0]["message"]
    assert set(Path(tempfile.gettempdir()).glob("rensenet-*.nii")) == before


def test_each_client_may_queue_only_a_few_scans(viewer) -> None:
    """50 parallel requests were all accepted; now a client with MAX_JOBS_PER_CLIENT scans queued or running is
    told to wait (429), and may scan again once they finish."""
    runner = viewer["runner"]
    with runner.lock:  # the CPU is busy: every scan waits in the queue
        answers = [_scan(viewer, {"path": "kidney.jpg"}) for _ in range(10)]
    codes = [a.status_code for a in answers]
    assert codes == [200] * MAX_JOBS_PER_CLIENT + [429] * (10 - MAX_JOBS_PER_CLIENT)
    assert f"{MAX_JOBS_PER_CLIENT} scans of yours are queued or running already" in answers[-1].json()["detail"]
    for a in answers[:MAX_JOBS_PER_CLIENT]:
        assert _finished(viewer, a.json()["id"])["status"] == "done"
    assert _scan(viewer, {"path": "kidney.jpg"}).status_code == 200
