"""A loopback server speaking the part of the Hugging Face Hub's file API that ``huggingface_hub``'s
downloads use: a fake at a true system edge (the Hub is not reachable from tests), driven by the
real client through ``ZOO_HF_ENDPOINT``.

``HEAD``/``GET /{org}/{repo}/resolve/{revision}/{path}``: the file at that branch or commit, with
``X-Repo-Commit`` (the commit the revision points to), ``ETag``/``X-Linked-Etag`` (an LFS file's
sha256, quoted) and ``X-Linked-Size``; a missing repository, revision or file is a 404 with the
Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``). ``publish``
makes a new commit and moves the branch to it; ``served`` can be changed to serve other bytes
than a commit holds (a tampered mirror). Every request is recorded."""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self) -> None:
        self.commits: dict[str, dict[str, dict[str, bytes]]] = {}  # repo -> commit -> {path: bytes}
        self.branches: dict[str, dict[str, str]] = {}  # repo -> branch -> commit
        self.served: dict[tuple[str, str, str], bytes] = {}  # (repo, commit, path) -> bytes served instead
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path.split("?")[0])
                if not m:
                    return self._error(404, "RepoNotFound")
                repo, revision, path = m.groups()
                if repo not in hub.commits:
                    return self._error(404, "RepoNotFound")
                commit = hub.branches[repo].get(revision, revision)
                if commit not in hub.commits[repo]:
                    return self._error(404, "RevisionNotFound")
                files = hub.commits[repo][commit]
                if path not in files:
                    return self._error(404, "EntryNotFound")
                data = hub.served.get((repo, commit, path), files[path])
                lfs = path.endswith(".onnx")
                etag = hashlib.sha256(files[path]).hexdigest() if lfs else hashlib.sha1(files[path]).hexdigest()
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{etag}"')
                if lfs:
                    self.send_header("X-Linked-Etag", f'"{etag}"')
                    self.send_header("X-Linked-Size", str(len(files[path])))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _error(self, status: int, code: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def publish(self, repo: str, files: dict[str, bytes], branch: str = "main") -> str:
        """A new commit of ``repo`` holding ``files`` (on top of the branch's), the branch moved to it."""
        base = self.commits.setdefault(repo, {}).get(self.branches.setdefault(repo, {}).get(branch, ""), {})
        tree = {**base, **files}
        commit = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in tree.items())).encode()
                              + str(len(self.commits[repo])).encode()).hexdigest()
        self.commits[repo][commit] = tree
        self.branches[repo][branch] = commit
        return commit

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
