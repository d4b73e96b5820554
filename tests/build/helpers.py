"""Helpers for the build tests: context tars, a build call, running a built image."""

from __future__ import annotations

import io
import re
import tarfile

BUILD_TIMEOUT = 120


def context_tar(files: dict[str, bytes | str | tuple], compression: str = "") -> bytes:
    """A tar of ``files``: ``name -> content`` (bytes/str), ``("symlink", target)``,
    ``("dir",)`` or ``("file", content, mode)``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}" if compression else "w") as tar:
        for name, value in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_380_000_000
            data = b""
            if isinstance(value, tuple) and value[0] == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, value[1]
            elif isinstance(value, tuple) and value[0] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                mode = 0o644
                if isinstance(value, tuple):
                    _, value, mode = value
                data = value.encode() if isinstance(value, str) else value
                info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def dockerfile(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def build(daemon, body: bytes | None = None, **params):
    """POST /build; returns the httpx response (its whole text read)."""
    query = {k: v for k, v in params.items() if v is not None}
    with daemon.client(timeout=BUILD_TIMEOUT) as client:
        return client.post("/build", params=query, content=body if body is not None else b"")


def built_id(text: str) -> str:
    found = re.findall(r"^Successfully built ([0-9a-f]{12})$", text, re.M)
    assert len(found) == 1, text
    return found[0]


def run_in(daemon, image: str, cmd: list[str], **config) -> tuple[int, str, dict]:
    """Create and start a container of ``image``; (exit code, output, inspect)."""
    with daemon.client(timeout=BUILD_TIMEOUT) as client:
        answer = client.post("/containers/create", json={"Image": image, "Cmd": cmd, **config})
        assert answer.status_code == 201, answer.text
        cid = answer.json()["Id"]
        try:
            assert client.post(f"/containers/{cid}/start").status_code == 204
            code = client.post(f"/containers/{cid}/wait").json()["StatusCode"]
            logs = client.post(f"/containers/{cid}/attach", params={"logs": 1, "stdout": 1, "stderr": 1})
            info = client.get(f"/containers/{cid}/json").json()
            return code, strip_mux(logs.content), info
        finally:
            client.delete(f"/containers/{cid}")


def strip_mux(data: bytes) -> str:
    """Attach output of a non-tty container: 8-byte stream headers before each frame."""
    out, i = bytearray(), 0
    while i + 8 <= len(data) and data[i] in (0, 1, 2) and data[i + 1:i + 4] == b"\0\0\0":
        size = int.from_bytes(data[i + 4:i + 8], "big")
        out += data[i + 8:i + 8 + size]
        i += 8 + size
    return (bytes(out) if i == len(data) else data).decode()


def container_ids(daemon) -> set[str]:
    with daemon.client() as client:
        return {row["Id"] for row in client.get("/containers/json", params={"all": 1}).json()}

