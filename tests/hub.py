"""One loopback stand-in for huggingface.co, for every test that talks to the Hub (fixture `hub`, tests/conftest.py).

Downloads: a repository in `server.refused` answers every request the way huggingface.co does for a gated (401,
`GatedRepo`) or a missing (404, `RepoNotFound`) repository; the two the tests use are refused by default.

Uploads: the endpoints huggingface_hub 1.33 calls for `create_repo` and `upload_folder`: create the repository,
check README.md's metadata, preupload (the server says which files are LFS: `server.lfs_suffixes`), the Git LFS
batch API (then PUT and verify each object, checked against its sha256) and the commit (ndjson, small files
inline). `server.created` and `server.commits` record what arrived, every file's bytes included.

Whether an LFS file travels by Git LFS or by Xet storage is the client's choice, not the server's: with hf_xet
installed, huggingface_hub sends every file the server calls "lfs" to Xet storage, which the stub does not
implement. So the fixture's environment sets HF_HUB_DISABLE_XET=1; a test of the default client (hf_xet) sets it
to 0 and empties `lfs_suffixes`, so that every file goes inline.

Every request is recorded in `server.requests` as (method, path, Authorization header); `server.fail` maps an
upload route to the HTTP status to answer instead. Anything else is a plain 404.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

GATED = "org/gated-model"
MISSING = "org/no-such-model"
REFUSALS = {
    "gated": (
        401,
        "GatedRepo",
        "Access to model {repo} is restricted. You must have access to it and be authenticated.",
    ),
    "missing": (404, "RepoNotFound", "Repository not found"),
}


class _Hub(BaseHTTPRequestHandler):
    ROUTES = [
        ("POST", r"/api/repos/create", "create"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("POST", r"/api/models/(?P<repo>[\w.-]+/[\w.-]+)/preupload/main", "preupload"),
        ("POST", r"/(?P<repo>[\w.-]+/[\w.-]+)\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/lfs/(?P<oid>[0-9a-f]{64})", "lfs_put"),
        ("POST", r"/lfs/verify", "lfs_verify"),
        ("POST", r"/api/models/(?P<repo>[\w.-]+/[\w.-]+)/commit/main", "commit"),
    ]

    def respond(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
        path = urlsplit(self.path).path
        for repo, kind in self.server.refused.items():
            if f"/{repo}/" in f"{path}/":
                status, code, message = REFUSALS[kind]
                return self.reply(status, {"error": message.format(repo=repo)}, error_code=code)
        for method, pattern, name in self.ROUTES:
            match = re.fullmatch(pattern, path)
            if method == self.command and match:
                if name in self.server.fail:
                    return self.reply(self.server.fail[name], {"error": f"stub refuses {name}"})
                return self.reply(*getattr(self, name)(body, **match.groupdict()))
        self.reply(404, {"error": "stub: no such endpoint"})

    do_GET = do_HEAD = do_POST = do_PUT = respond

    def reply(self, status: int, payload: dict, error_code: str = "") -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        if error_code:
            self.send_header("X-Error-Code", error_code)
        if status >= 400:
            self.send_header("X-Error-Message", payload["error"])
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def create(self, body):
        request = json.loads(body)
        self.server.created.append(request)
        return 200, {"url": f"{self.server.endpoint}/{request['organization']}/{request['name']}"}

    def validate_yaml(self, body):
        return 200, {"errors": [], "warnings": []}

    def preupload(self, body, repo):
        lfs = self.server.lfs_suffixes
        modes = [(f["path"], "lfs" if f["path"].endswith(lfs) else "regular") for f in json.loads(body)["files"]]
        return 200, {"files": [{"path": p, "uploadMode": m, "shouldIgnore": False, "oid": None} for p, m in modes]}

    def lfs_batch(self, body, repo):
        lfs = f"{self.server.endpoint}/lfs"
        objects = [
            {**obj, "actions": {"upload": {"href": f"{lfs}/{obj['oid']}"}, "verify": {"href": f"{lfs}/verify"}}}
            for obj in json.loads(body)["objects"]
        ]
        return 200, {"transfer": "basic", "objects": objects}

    def lfs_put(self, body, oid):
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": f"content does not match sha256 {oid}"}
        self.server.blobs[oid] = body
        return 200, {}

    def lfs_verify(self, body):
        obj = json.loads(body)
        blob = self.server.blobs.get(obj["oid"])
        return (200, {}) if blob is not None and len(blob) == obj["size"] else (404, {"error": "no such object"})

    def commit(self, body, repo):
        lines = [json.loads(line) for line in body.splitlines()]
        files, lfs = {}, []
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile" and value["oid"] in self.server.blobs:
                files[value["path"]] = self.server.blobs[value["oid"]]
                lfs.append(value["path"])
            else:
                return 422, {"error": f"{line['key']} {value['path']}: no such LFS object"}
        self.server.commits.append({"summary": lines[0]["value"]["summary"], "files": files, "lfs": lfs})
        oid = hashlib.sha1(body).hexdigest()
        return 200, {"commitUrl": f"{self.server.endpoint}/{repo}/commit/{oid}", "commitOid": oid}

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(home: Path):
    """Start the stub; yield the environment that points huggingface_hub at it (its cache and token file under
    `home`, no token) and the server, whose attributes the module docstring describes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    server.endpoint = f"http://127.0.0.1:{server.server_port}"
    server.requests, server.created, server.commits, server.blobs = [], [], [], {}
    server.fail, server.lfs_suffixes = {}, (".safetensors",)
    server.refused = {GATED: "gated", MISSING: "missing"}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "HF_ENDPOINT": server.endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(home),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_TOKEN": "",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
    }
    try:
        yield env, server
    finally:
        server.shutdown()
        server.server_close()
