"""What stands between the viewer and a hostile web page: the Host check (DNS rebinding), the same-origin and
session-token check on every state-changing call (cross-site requests), and an upload read with its size counted
as it streams (a body without Content-Length cannot fill the disk before the limit is seen)."""
from __future__ import annotations

import secrets
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import AsyncIterator, Dict, Iterable, Set

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.formparsers import MultiPartException, MultiPartParser

#: Host names a local viewer always answers to.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: The header the page sends its session token in.
TOKEN_HEADER = "x-rensenet-token"


def host_name(header: str) -> str:
    """The host of a Host header, without its port: ``[::1]:8000`` -> ``::1``, ``localhost:80`` -> ``localhost``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:value.index("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostGuard:
    """ASGI middleware: a request whose Host is not one the viewer was started on is answered 400, so a web page
    that rebinds its own name to 127.0.0.1 cannot talk to the viewer."""

    def __init__(self, app, allowed: Iterable[str]) -> None:
        self.app, self.allowed = app, {host_name(h) for h in allowed}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if host_name(header) not in self.allowed:
                detail = (f"Host {header!r} is not a name this viewer was started on ({sorted(self.allowed)}); open "
                          "it by the address it printed")
                await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def check_same_origin(request: Request, token: str) -> None:
    """A state-changing call must come from the viewer's own page: same Origin (when sent), a same-origin
    Sec-Fetch-Site (when sent), and the session token the page got from /api/info, which no other site can read."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != f"{request.url.scheme}://{host}".lower():
        raise HTTPException(403, f"cross-site request from {origin!r} refused; use the viewer's own page")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(403, f"cross-site request ({site}) refused; use the viewer's own page")
    if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), token.encode()):
        raise HTTPException(403, "missing or wrong session token: reload the viewer's page")


def require_json(request: Request) -> None:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, "send the request as JSON (Content-Type: application/json)")


class _TooLarge(Exception):
    pass


async def _counted(request: Request, limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _TooLarge
        yield chunk


async def save_upload(request: Request, uploads: Path, limit_mb: float) -> Dict[str, object]:
    """The files of a multipart upload saved under a new folder of ``uploads``; the body is counted as it arrives
    and reading stops at the limit (413), with nothing kept."""
    limit = int(limit_mb * 1e6)
    too_large = HTTPException(413, f"the upload is larger than the limit of {limit_mb:g} MB")
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(415, "send the files as multipart/form-data")
    if int(request.headers.get("content-length") or 0) > limit:
        raise too_large
    parser = MultiPartParser(request.headers, _counted(request, limit), max_files=10000, max_fields=100)
    try:
        form = await parser.parse()
    except _TooLarge:
        raise too_large from None
    except MultiPartException as e:
        raise HTTPException(400, f"not a readable upload ({e})") from None
    target = uploads / uuid.uuid4().hex[:12]
    target.mkdir()
    count = 0
    try:
        for item in form.getlist("files"):
            parts = _safe_parts(str(getattr(item, "filename", "") or "file"))
            if not parts or not hasattr(item, "read"):
                continue
            dest = target.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(await item.read())
            count += 1
    finally:
        await form.close()
    if not count:
        shutil.rmtree(target, ignore_errors=True)
        raise HTTPException(400, "the upload holds no files")
    return {"upload": target.name, "files": count}


def _safe_parts(filename: str) -> list:
    """A client's file name as path parts that stay inside the upload folder."""
    name = PurePosixPath(filename.replace("\\", "/"))
    return [p for p in name.parts if p not in ("", ".", "..", "/")]


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> Set[str]:
    """The names the viewer answers to: loopback, the address it listens on, and for a wildcard address
    (0.0.0.0, ::) this machine's own names and addresses."""
    import socket

    names = {*LOOPBACK_HOSTS, host_name(host), *extra}
    if host in ("0.0.0.0", "::", ""):
        machine = socket.gethostname()
        names |= {machine.lower(), socket.getfqdn().lower()}
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(machine, None)}
        except OSError:
            pass
    return {host_name(n) for n in names}
