"""A tiny Hugging Face hub on 127.0.0.1 for download tests: no internet, full control.

It answers exactly what ``huggingface_hub`` (0.36) asks during ``snapshot_download``:

* ``GET /api/models/{repo}/revision/{rev}``: ``id``, ``sha`` and ``siblings`` (the file list);
* ``HEAD``/``GET /{repo}/resolve/{rev}/{file}``: ``X-Repo-Commit``, ``ETag`` and
  ``Content-Length``; ``GET`` honours ``Range: bytes=N-`` (huggingface_hub resumes from its
  ``.incomplete`` file with it);
* 404s carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), which
  is how huggingface_hub tells the cases apart.

``drop`` names files whose body is cut off halfway (headers promise the full length), to test
that a broken download never leaves a file a later load trusts. ``requests`` logs every path.
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Set, Tuple
from urllib.parse import unquote, urlsplit


class FakeHub:
    def __init__(self) -> None:
        # repo id -> revision name (branch, tag or the sha itself) -> (sha, {file name: bytes})
        self.repos: Dict[str, Dict[str, Tuple[str, Dict[str, bytes]]]] = {}
        self.requests: List[Tuple[str, str]] = []
        self.drop: Set[str] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def publish(self, repo_id: str, folder: Path, revision: str = "main", extra: Dict[str, bytes] = None) -> str:
        """Serve every file of ``folder`` (plus ``extra``) as ``repo_id`` at ``revision``."""
        files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
        files.update(extra or {})
        sha = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()).hexdigest()
        revisions = self.repos.setdefault(repo_id, {})
        revisions[revision] = revisions[sha] = (sha, files)
        return sha

    def files_fetched(self) -> List[str]:
        return sorted(path.rsplit("/", 1)[-1] for method, path in self.requests if method == "GET" and "/resolve/" in path)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _error(self, status: int, code: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            payload = b'{"error": "%s"}' % code.encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(payload)

        def _serve(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path))
            if path.startswith("/api/models/") and "/revision/" in path:
                repo_id, revision = path[len("/api/models/"):].split("/revision/", 1)
                return self._info(repo_id, revision)
            if "/resolve/" in path:
                repo_id, rest = path.lstrip("/").split("/resolve/", 1)
                revision, filename = rest.split("/", 1)
                return self._file(repo_id, revision, filename, body)
            self._error(404, "RepoNotFound")

        def _lookup(self, repo_id: str, revision: str):
            if repo_id not in hub.repos:
                self._error(404, "RepoNotFound")
                return None
            if revision not in hub.repos[repo_id]:
                self._error(404, "RevisionNotFound")
                return None
            return hub.repos[repo_id][revision]

        def _info(self, repo_id: str, revision: str) -> None:
            found = self._lookup(repo_id, revision)
            if found is None:
                return
            sha, files = found
            import json

            payload = json.dumps({"id": repo_id, "sha": sha, "siblings": [{"rfilename": f} for f in files]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _file(self, repo_id: str, revision: str, filename: str, body: bool) -> None:
            found = self._lookup(repo_id, revision)
            if found is None:
                return
            sha, files = found
            if filename not in files:
                return self._error(404, "EntryNotFound")
            data = files[filename]
            start = 0
            ranged = self.headers.get("Range", "")
            if body and ranged.startswith("bytes=") and ranged.endswith("-"):
                start = int(ranged[len("bytes="):-1])
            part = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", sha)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(part) if body else len(data)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if filename in hub.drop:
                self.wfile.write(part[: len(part) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(part)

    return Handler
