"""A minimal Hugging Face Hub over real HTTP, for tests that point huggingface_hub at it
(`HF_ENDPOINT`): the few routes a fetch uses, serving repositories laid out from local
directories, and a count of every byte of file content it sends.

Routes (those huggingface_hub's `model_info`, `list_repo_tree`, `hf_hub_download` and
`snapshot_download` call for a model repository):

- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: the repository's info with its
  files (`siblings`), and, as on the Hub only when asked (`?blobs=true`), their sizes and LFS
  sha256;
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: the file listing;
- `HEAD` and `GET /{repo}/resolve/{rev}/{file}`: a file's metadata headers, and its bytes;
- `GET /api/models`: the listing `HfApi.list_models` reads: `author`, `pipeline_tag`, `search`,
  `filter` (tags: the library, `base_model:{id}`), `sort=downloads` (most first), `limit`,
  `cardData` (the card's `base_model`), pages of LIST_PAGE_SIZE items linked by a `Link:
  <…>; rel="next"` header as on the Hub.

A repository's listing metadata (downloads, task, library, base model) is given to `add_repo`;
a base model is also written into the repository's model card (README.md front matter).

Files named like weights (`*.safetensors`, `*.bin`, `*.gguf`, ...) are served as LFS files: their
etag is their sha256, as on the Hub, so huggingface_hub names their cache blobs by it. Unknown
repositories and revisions answer 404 with the Hub's error codes.

A hostile or broken Hub, for the tests of swreg's bounds: `hang()` makes every request wait
(connection accepted, nothing sent) until `release()`; `stall_after` makes file bodies stop after
that many bytes for `stall_seconds` (a trickle that stalls mid-file); `failing_status` answers
every request with an HTTP error.
"""

import hashlib
import json
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".onnx", ".h5", ".msgpack")
# The size of a git-lfs pointer file, which the Hub reports for LFS files.
LFS_POINTER_SIZE = 134

# A hung request is let go after this long whatever happens (a test that forgot to release()).
HANG_LIMIT_SECONDS = 120.0

REPO = r"(?P<repo>[^/]+/[^/]+)"
INFO_ROUTE = re.compile(rf"^/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?$")
TREE_ROUTE = re.compile(rf"^/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
RESOLVE_ROUTE = re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
LIST_ROUTE = re.compile(r"^/api/models/?$")
# Small pages, so that tests cross page boundaries (the Hub's pages hold up to 1,000).
LIST_PAGE_SIZE = 2


@dataclass
class HubFile:
    path: str
    content: bytes

    @property
    def is_lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def git_sha1(self) -> str:
        """The git blob id, as the Hub gives for every file."""
        header = f"blob {len(self.content)}\0".encode()
        return hashlib.sha1(header + self.content).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.is_lfs else self.git_sha1


@dataclass
class HubRepo:
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    downloads: int = 0
    pipeline_tag: str | None = "text-generation"
    library: str | None = "transformers"
    base_model: str | None = None

    @property
    def tags(self) -> list[str]:
        tags = [t for t in (self.library, self.pipeline_tag) if t]
        if self.base_model:
            tags += [f"base_model:{self.base_model}", f"base_model:finetune:{self.base_model}"]
        return tags

    def resolve(self, revision: str | None) -> str | None:
        revision = revision or "main"
        return revision if revision in self.commits else self.refs.get(revision)


class FakeHub:
    """Serve repositories over HTTP on 127.0.0.1; `url` is the endpoint to point HF_ENDPOINT at.

    `served_bytes` counts the file bytes sent per (repo, path); `requests` lists every
    (method, path) received, in order, and `authorizations` the Authorization header of each
    (None when absent). Setting `failing_status` makes every answer that HTTP error (with
    `failing_code` as its X-Error-Code and `failing_message` as its X-Error-Message, as the Hub
    sends them for a gated or disabled repository)."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.served_bytes: Counter[tuple[str, str]] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []
        self.failing_status: int | None = None
        self.failing_code = ""
        self.failing_message = ""
        self.stall_after: int | None = None
        self.stall_seconds = 0.0
        # Set while requests are answered; cleared by hang().
        self._answering = threading.Event()
        self._answering.set()
        self.waiting = 0  # requests held by hang() right now
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.handle_error = self._handle_error
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def add_repo(
        self,
        repo_id: str,
        directory: Path,
        *,
        extra_files: dict[str, bytes] | None = None,
        downloads: int = 0,
        pipeline_tag: str | None = "text-generation",
        library: str | None = "transformers",
        base_model: str | None = None,
    ) -> str:
        """Publish a directory's files (plus `extra_files`, plus a model card naming
        `base_model`) as a new commit on `main`; returns its 40-hex sha."""
        if base_model:
            card = f"---\nbase_model: {base_model}\nlibrary_name: {library}\n---\n# {repo_id}\n"
            extra_files = {"README.md": card.encode(), **(extra_files or {})}
        files = {
            p.relative_to(directory).as_posix(): HubFile(
                p.relative_to(directory).as_posix(), p.read_bytes()
            )
            for p in sorted(Path(directory).rglob("*"))
            if p.is_file()
        }
        for name, content in (extra_files or {}).items():
            files[name] = HubFile(name, content)
        manifest = json.dumps(sorted((n, f.git_sha1) for n, f in files.items())).encode()
        sha = hashlib.sha1(repo_id.encode() + manifest).hexdigest()
        repo = self.repos.setdefault(repo_id, HubRepo())
        repo.commits[sha] = files
        repo.refs["main"] = sha
        repo.downloads, repo.pipeline_tag = downloads, pipeline_tag
        repo.library, repo.base_model = library, base_model
        return sha

    def _handle_error(self, request, client_address) -> None:
        # A client that gave up on a hung or stalled answer is what these tests cause.
        if not isinstance(sys.exc_info()[1], OSError):
            ThreadingHTTPServer.handle_error(self._server, request, client_address)

    def hang(self) -> None:
        """Accept every request and answer none (until release())."""
        self._answering.clear()

    def release(self) -> None:
        self._answering.set()

    def total_served(self, repo_id: str | None = None) -> int:
        with self._lock:
            return sum(n for (repo, _), n in self.served_bytes.items() if repo_id in (None, repo))

    def downloads(self, repo_id: str) -> list[str]:
        """The files of `repo_id` whose bytes were requested (GET), in order."""
        with self._lock:
            requests = list(self.requests)
        found = []
        for method, path in requests:
            match = RESOLVE_ROUTE.match(path)
            if method == "GET" and match and match["repo"] == repo_id:
                found.append(match["path"])
        return found

    # --- answers ---------------------------------------------------------------------------

    def info(self, repo_id: str, sha: str, *, blobs: bool = False) -> dict:
        return {
            "_id": repo_id,
            "id": repo_id,
            "modelId": repo_id,
            "sha": sha,
            "private": False,
            "gated": False,
            "disabled": False,
            "tags": [],
            "siblings": [_sibling(f, blobs) for f in self.repos[repo_id].commits[sha].values()],
        }

    def listing(self, query: dict[str, list[str]]) -> tuple[list[dict], int | None]:
        """One page of `GET /api/models` and the offset of the next page (None: the last)."""
        one = {k: v[0] for k, v in query.items()}
        found = [
            (repo_id, repo)
            for repo_id, repo in sorted(self.repos.items())
            if ("author" not in one or repo_id.split("/")[0] == one["author"])
            and ("pipeline_tag" not in one or repo.pipeline_tag == one["pipeline_tag"])
            and ("search" not in one or one["search"].lower() in repo_id.lower())
            and all(tag in repo.tags for tag in query.get("filter", []))
        ]
        if one.get("sort") == "downloads":
            found.sort(key=lambda item: -item[1].downloads)
        if "limit" in one:
            found = found[: int(one["limit"])]
        start = int(one.get("cursor", 0))
        page = found[start : start + LIST_PAGE_SIZE]
        items = []
        for repo_id, repo in page:
            item = {
                "_id": repo_id,
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.refs["main"],
                "downloads": repo.downloads,
                "likes": 0,
                "pipeline_tag": repo.pipeline_tag,
                "library_name": repo.library,
                "tags": repo.tags,
                "private": False,
            }
            if one.get("cardData") in ("True", "true", "1"):
                item["cardData"] = {"base_model": repo.base_model} if repo.base_model else {}
            items.append(item)
        following = start + LIST_PAGE_SIZE
        return items, (following if following < len(found) else None)

    def tree(self, repo_id: str, sha: str, path: str) -> list[dict]:
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        return [
            _tree_entry(f)
            for name, f in sorted(self.repos[repo_id].commits[sha].items())
            if name.startswith(prefix)
        ]


def _sibling(f: HubFile, blobs: bool) -> dict:
    entry: dict = {"rfilename": f.path}
    if not blobs:
        return entry
    entry.update(size=len(f.content), blobId=f.git_sha1)
    if f.is_lfs:
        entry["lfs"] = {"sha256": f.sha256, "size": len(f.content), "pointerSize": LFS_POINTER_SIZE}
    return entry


def _tree_entry(f: HubFile) -> dict:
    entry: dict = {"type": "file", "oid": f.git_sha1, "size": len(f.content), "path": f.path}
    if f.is_lfs:
        entry["lfs"] = {"oid": f.sha256, "size": len(f.content), "pointerSize": LFS_POINTER_SIZE}
    return entry


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args) -> None:  # quiet: the test reads hub.requests
            pass

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _answer(self, send_body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            with hub._lock:
                hub.requests.append((self.command, path))
                hub.authorizations.append(self.headers.get("Authorization"))
                hub.waiting += 0 if hub._answering.is_set() else 1
            if not hub._answering.is_set():
                hub._answering.wait(HANG_LIMIT_SECONDS)
                with hub._lock:
                    hub.waiting -= 1
            if hub.failing_status is not None:
                message = hub.failing_message or f"failing with HTTP {hub.failing_status}"
                self._error(hub.failing_status, hub.failing_code, message)
            elif match := TREE_ROUTE.match(path):
                found = self._find(match["repo"], match["rev"])
                if found:
                    self._json(hub.tree(match["repo"], found, match["path"] or ""), send_body)
            elif match := INFO_ROUTE.match(path):
                found = self._find(match["repo"], match["rev"])
                if found:
                    blobs = parse_qs(urlsplit(self.path).query).get("blobs") == ["true"]
                    self._json(hub.info(match["repo"], found, blobs=blobs), send_body)
            elif LIST_ROUTE.match(path):
                query = parse_qs(urlsplit(self.path).query)
                items, following = hub.listing(query)
                headers = {}
                if following is not None:
                    query["cursor"] = [str(following)]
                    headers["Link"] = (
                        f'<{hub.url}/api/models?{urlencode(query, doseq=True)}>; rel="next"'
                    )
                self._json(items, send_body, headers)
            elif match := RESOLVE_ROUTE.match(path):
                found = self._find(match["repo"], match["rev"])
                if found:
                    self._file(match["repo"], found, match["path"], send_body)
            else:
                self._error(404, "EntryNotFound", f"no route for {path}")

        def _find(self, repo_id: str, revision: str | None) -> str | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                return None
            sha = repo.resolve(revision)
            if sha is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return sha

        def _file(self, repo_id: str, sha: str, path: str, send_body: bool) -> None:
            f = hub.repos[repo_id].commits[sha].get(path)
            if f is None:
                self._error(404, "EntryNotFound", f"{path} does not exist at {sha}")
                return
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(f.content)),
                "ETag": f'"{f.etag}"',
                "X-Repo-Commit": sha,
            }
            if f.is_lfs:
                headers["X-Linked-Etag"] = f'"{f.sha256}"'
                headers["X-Linked-Size"] = str(len(f.content))
            if send_body and hub.stall_after is not None:
                self._send(200, headers, f.content[: hub.stall_after])
                time.sleep(hub.stall_seconds)
                try:
                    self.wfile.write(f.content[hub.stall_after :])
                except OSError:  # the client gave up on the stalled file, as it should
                    return
            else:
                self._send(200, headers, f.content if send_body else b"")
            if send_body:
                with hub._lock:
                    hub.served_bytes[(repo_id, path)] += len(f.content)

        def _json(self, document, send_body: bool, extra: dict[str, str] | None = None) -> None:
            body = json.dumps(document).encode()
            headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
            headers.update(extra or {})
            self._send(200, headers, body if send_body else b"")

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            headers = {
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
                "X-Error-Code": code,
                "X-Error-Message": message,
            }
            self._send(status, headers, body if self.command != "HEAD" else b"")

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(body)

    return Handler
