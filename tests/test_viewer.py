"""``rensenet view`` in a real browser (Debian's chromium driven by Playwright), and its guards over HTTP."""
from __future__ import annotations

import csv
import io
import gzip
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from rensenet.demo import sample_data_dir
from test_volumes import MR, write_series

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen) -> None:
    for _ in range(240):
        try:
            if httpx.get(url + "/api/info", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    pytest.fail(f"the viewer did not start: {proc.stdout.read()}")


def _view(root: Path, port: int, out: Path, temp: Path, *extra: str) -> subprocess.Popen:
    """``rensenet view`` as a user starts it, with a temporary folder of its own (to see what it leaves there)."""
    return subprocess.Popen([sys.executable, "-m", "rensenet", "view", "--model", "rensenet_s.kidney_stone_scan",
                             str(root), "--port", str(port), "--out", str(out), "--window", "abdomen", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "2", "TMPDIR": str(temp)})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The viewer on a free port, serving a folder with a CT series, a kidney slice, an MR file and an empty folder.
    It is stopped with SIGTERM, as a service manager stops it: its uploads and unpacked volumes must go too."""
    root = tmp_path_factory.mktemp("viewer") / "cases"
    write_series(root / "series", 5)
    shutil.copy(sorted((sample_data_dir("kidney-stone-scans") / "images").glob("*.jpg"))[0], root / "kidney.jpg")
    shutil.copy(MR, root / "mr.dcm")
    (root / "empty").mkdir()
    port = _free_port()
    out, temp = root.parent / "out", root.parent / "tmp"
    temp.mkdir()
    files = sorted(p for p in root.rglob("*"))
    proc = _view(root, port, out, temp, "--max-upload-mb", "1")
    url = f"http://127.0.0.1:{port}"
    _wait_for(url, proc)
    token = httpx.get(url + "/api/info").json()["token"]
    yield {"url": url, "root": root, "out": out, "proc": proc, "temp": temp, "port": port,
           "headers": {"X-Rensenet-Token": token}}
    proc.terminate()
    proc.wait(timeout=20)
    assert list(temp.iterdir()) == []  # uploads and unpacked volumes removed
    assert sorted(p for p in root.rglob("*")) == files  # nothing written into the folder it serves


def test_only_files_under_the_folder_can_be_read(server) -> None:
    url, headers = server["url"], server["headers"]
    assert httpx.get(url + "/api/browse", params={"path": "../"}).status_code == 403
    assert httpx.get(url + "/api/browse", params={"path": "series/../../"}).status_code == 403
    assert httpx.get(url + "/api/browse", params={"path": "/etc"}).status_code == 400
    assert httpx.post(url + "/api/scans", json={"path": "/etc/passwd"}, headers=headers).status_code == 400
    assert httpx.post(url + "/api/scans", json={"path": "../out"}, headers=headers).status_code == 403
    assert httpx.post(url + "/api/scans", json={"upload": "../../etc"}, headers=headers).status_code == 404
    big = httpx.post(url + "/api/upload", files=[("files", ("big.png", b"\0" * 1_200_000))], headers=headers)
    assert big.status_code == 413 and "limit of 1 MB" in big.json()["detail"]
    page = httpx.get(url + "/").text
    assert "http" not in page.replace("http-equiv", "")  # nothing is loaded from elsewhere


def _pixel(page, x: float, y: float) -> list:
    return page.evaluate(f"Array.from(document.getElementById('canvas').getContext('2d')"
                         f".getImageData({round(x)}, {round(y)}, 1, 1).data)")


def _set_range(page, selector: str, value: float) -> None:
    page.evaluate(f"(() => {{ const e = document.querySelector('{selector}'); e.value = {value}; "
                  "e.dispatchEvent(new Event('input')); })()")


def test_scan_a_series_in_the_browser(server, tmp_path: Path) -> None:
    url = server["url"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 850})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("#files option[value='series']", state="attached")
        page.select_option("#files", "series")
        page.click("#scan-path")
        _set_range(page, "#threshold", 0)  # every candidate listed: on this phantom series scores may all be low
        page.wait_for_function("document.querySelectorAll('#candidates tbody tr').length > 0", timeout=90000)
        job = httpx.get(url + "/api/scans").json()[0]
        rows = list(csv.DictReader(io.StringIO(httpx.get(f"{url}/api/scans/{job['id']}/files/candidates.csv").text)))
        top = max(rows, key=lambda r: float(r["score"]))
        assert page.input_value("#slice") == top["slice"]  # the page opens on the top candidate's slice
        # its marker lies where candidates.csv says: the view is fit and centred, pixel centres at (i + 0.5) * s
        w, h = page.evaluate("[document.getElementById('canvas').width, document.getElementById('canvas').height]")
        vol = job["volumes"][0]
        s = min(w / vol["cols"], h / vol["rows"])
        x = (w - vol["cols"] * s) / 2 + (float(top["x"]) + 0.5) * s
        y = (h - vol["rows"] * s) / 2 + (float(top["y"]) + 0.5) * s
        assert _pixel(page, x, y)[:3] == [255, 0, 255]
        # a candidate of another slice: clicking it shows that slice, centred on it
        other = next(r for r in sorted(rows, key=lambda r: -float(r["score"])) if r["slice"] != top["slice"])
        rank = sorted(rows, key=lambda r: -float(r["score"])).index(other) + 1
        page.click(f"#candidates tbody tr[data-rank='{rank}']")
        page.wait_for_function(f"document.getElementById('slice').value === '{other['slice']}'")
        # the slider moves at once, the slice is drawn when its pixels arrive: wait for its marker at the centre
        page.wait_for_function(f"Array.from(document.getElementById('canvas').getContext('2d')"
                               f".getImageData({round(w / 2)}, {round(h / 2)}, 1, 1).data.slice(0, 3)).join() "
                               "=== '255,0,255'", timeout=10000)  # centred on its marker
        assert page.inner_text("#slice-label").startswith(f"{int(other['slice']) + 1} / 5")
        # the threshold filters the list
        before = page.locator("#candidates tbody tr").count()
        cut = int(float(top["score"]) * 100) / 100  # the slider's step is 0.01: the top candidate stays listed
        _set_range(page, "#threshold", cut)
        assert 0 < page.locator("#candidates tbody tr").count() == sum(float(r["score"]) >= cut for r in rows) < before
        # mm for candidates and the cursor: the series has geometry
        assert "LPS" in page.inner_text("#candidates tbody tr")
        box = page.locator("#canvas").bounding_box()  # the cursor on the centred candidate, in page coordinates
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        assert "mm LPS" in page.inner_text("#cursor") and "HU" in page.inner_text("#cursor")
        page.screenshot(path=str(tmp_path / "viewer.png"))
        assert (tmp_path / "viewer.png").stat().st_size > 20000 and not errors
        browser.close()


def test_bad_inputs_show_a_message_and_the_server_keeps_running(server, tmp_path: Path) -> None:
    url = server["url"]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#files option[value='mr.dcm']", state="attached")
        for entry, words in (("mr.dcm", "modality MR, not CT"), ("empty", "no DICOM series, images or NIfTI")):
            page.select_option("#files", entry)
            page.click("#scan-path")
            page.wait_for_function(f"document.getElementById('message').textContent.includes({words!r})",
                                   timeout=30000)
            assert page.locator("#message.error").is_visible()
        page.set_input_files("#upload-files", str(tmp_path / "broken.png"))
        page.wait_for_function("document.getElementById('message').textContent.includes('not a readable image')",
                               timeout=30000)
        assert "rensenet-view-uploads" not in page.inner_text("#message")  # the server's paths stay private
        browser.close()
    scans = httpx.get(url + "/api/scans").json()
    assert any(j["status"] == "done" and j["volumes"] for j in scans)  # the first scan is untouched
    done = next(j for j in scans if j["status"] == "done")
    assert httpx.get(f"{url}/api/scans/{done['id']}/candidates").status_code == 200
    assert server["proc"].poll() is None


def test_an_upload_without_a_length_is_cut_off_at_the_limit(server) -> None:
    """A chunked upload declares no size: it is counted as it streams and refused at the limit (1 MB here), not
    after the whole body was written to the temporary folder (1.36 GB of a 1.5 GB upload, before)."""
    boundary = "rensenet-test-boundary"
    head = (f"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1:{server['port']}\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"X-Rensenet-Token: {server['headers']['X-Rensenet-Token']}\r\n\r\n")
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.nii\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    block, sent, response = b"\0" * 65536, 0, b""
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as sock:
        sock.sendall(head.encode() + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        try:
            while sent < 64_000_000 and not response:
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                sent += len(block)
                if select.select([sock], [], [], 0)[0]:
                    response = sock.recv(65536)
        except OSError:  # the server closed the connection: it stopped reading
            pass
        response = response or sock.recv(65536)
        while b"limit" not in response:  # the body may come in its own packet
            more = sock.recv(65536)
            if not more:
                break
            response += more
    assert response.split(b"\r\n")[0].endswith(b"413 Request Entity Too Large") and b"limit of 1 MB" in response
    assert sent < 16_000_000  # it stopped reading near the limit (socket buffers hold a few MB)
    kept = [p for p in server["temp"].rglob("*") if p.is_file()]  # earlier tests' small uploads stay for the session
    assert "big.nii" not in {p.name for p in kept} and sum(p.stat().st_size for p in kept) < 100_000


def test_an_unpacked_upload_goes_when_the_viewer_is_stopped(server, tmp_path: Path) -> None:
    """A .nii.gz is unpacked into the temporary folder while its scan is open; the module fixture stops the
    viewer with SIGTERM and checks that the file is gone (it stayed behind before)."""
    import nibabel as nib
    import numpy as np

    data = np.random.default_rng(0).normal(0, 300, (64, 64, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii")
    upload = httpx.post(server["url"] + "/api/upload", headers=server["headers"],
                        files=[("files", ("v.nii.gz", gzip.compress((tmp_path / "v.nii").read_bytes())))])
    job = httpx.post(server["url"] + "/api/scans", json={"upload": upload.json()["upload"]},
                     headers=server["headers"]).json()
    for _ in range(240):
        job = httpx.get(f"{server['url']}/api/scans/{job['id']}").json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.25)
    assert job["status"] == "done" and job["volumes"][0]["n_slices"] == 3
    assert len(list(server["temp"].glob("rensenet-*.nii"))) == 1  # held while the scan is open


def test_ipv6_loopback_and_a_host_it_cannot_listen_on(tmp_path: Path) -> None:
    """``--host ::1`` serves on [::1] (a gaierror traceback before, with an empty upload folder left behind); a
    host it cannot listen on is one line, and leaves nothing."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    (tmp_path / "cases").mkdir()
    bad = _view(tmp_path / "cases", 0, tmp_path / "out", temp, "--host", "203.0.113.1")
    output, _ = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "Traceback" not in output and "--host 203.0.113.1: cannot listen there" in output
    assert list(temp.iterdir()) == []
    port = _free_port()
    proc = _view(tmp_path / "cases", port, tmp_path / "out", temp, "--host", "::1")
    try:
        _wait_for(f"http://[::1]:{port}", proc)
        assert httpx.get(f"http://[::1]:{port}/api/browse").json()["entries"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert list(temp.iterdir()) == []
