"""Read endpoints: repo info, tree, paths-info, commits, refs, and file resolve.

JSON shapes follow what huggingface_hub 2.4.0 parses (hf_api.py: ModelInfo, DatasetInfo,
RepoFile, RepoFolder, GitCommitInfo, GitRefs; file_download.py: get_hf_file_metadata).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from . import _card
from ._context import Context, api_repo, web_repo
from ._errors import HubError, entry_not_found
from ._http import Request, Response, json_response
from ._store import AUTHOR, Commit, Entry, Repo

TREE_PAGE = 1000
TREE_PAGE_EXPANDED = 50
COMMITS_PAGE = 50
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _page(ctx: Context, req: Request, items: list, size: int) -> tuple[list, dict[str, str]]:
    """One page of `items` plus a GitHub-style `Link: <...>; rel="next"` header if more follow."""
    cursor = req.arg("cursor", "0")
    if not cursor.isdigit():
        raise HubError(400, f"Invalid cursor '{cursor}': use the URL from the Link header")
    start = int(cursor)
    if start + size >= len(items):
        return items[start:], {}
    query = urlencode({**req.query, "cursor": [str(start + size)]}, doseq=True)
    return items[start : start + size], {"Link": f'<{ctx.endpoint}{req.path}?{query}>; rel="next"'}


def _card_data(ctx: Context, repo: Repo, commit: Commit) -> dict[str, Any] | None:
    readme = commit.files.get("README.md")
    if readme is None:
        return None
    try:
        return _card.metadata(ctx.store.read(repo, readme).decode("utf-8", "replace"))
    except _card.CardError:
        return None


def repo_info(
    ctx: Context, req: Request, types: str, namespace: str, name: str, revision: str | None = None
) -> Response:
    """GET /api/{type}s/{repo}[/revision/{rev}]: sha of the revision and its files (siblings)."""
    repo = api_repo(types, namespace, name)
    commit = ctx.store.resolve(repo, unquote(revision) if revision else "main")
    blobs = req.flag("blobs")
    siblings = []
    for path, entry in sorted(commit.files.items()):
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            sibling.update(size=entry.size, blobId=entry.oid)
            if entry.lfs:
                sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        siblings.append(sibling)
    meta = ctx.store.meta(repo)
    card = _card_data(ctx, repo, commit)
    info = {
        "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
        "id": repo.id,
        "author": repo.id.split("/")[0],
        "sha": commit.id,
        "lastModified": commit.date,
        "createdAt": meta["createdAt"],
        "private": meta["private"],
        "disabled": False,
        "gated": False,
        "downloads": 0,
        "likes": 0,
        "tags": list(card.get("tags") or []) if card else [],
        "siblings": siblings,
    }
    if card is not None:
        info["cardData"] = card
    return json_response(info)


def _folder_oid(files: dict[str, Entry], folder: str) -> str:
    """A stable id for a folder (git would hash the tree object; any content hash serves)."""
    lines = "".join(f"{path} {entry.oid}\n" for path, entry in sorted(files.items()) if path.startswith(folder + "/"))
    return hashlib.sha1(lines.encode()).hexdigest()


def _last_commit(ctx: Context, repo: Repo, commit: Commit, path: str) -> dict[str, str]:
    """The newest commit that changed `path` (a file or everything under a folder)."""

    def state(c: Commit) -> Any:
        return c.files.get(path) or {p: e for p, e in c.files.items() if p.startswith(path + "/")}

    current = commit
    while current.parents:
        parent = ctx.store.load_commit(repo, current.parents[0])
        if state(parent) != state(current):
            break
        current = parent
    return {"id": current.id, "title": current.title, "date": current.date}


def _item(ctx: Context, repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
    """A tree / paths-info entry: {"type": "file"|"directory", "oid", "size", "path", ...}."""
    entry = commit.files.get(path)
    if entry is None:
        item: dict[str, Any] = {"type": "directory", "oid": _folder_oid(commit.files, path), "size": 0, "path": path}
    else:
        item = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
        if entry.lfs:
            item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    if expand:
        item["lastCommit"] = _last_commit(ctx, repo, commit, path)
    return item


def tree(
    ctx: Context, req: Request, types: str, namespace: str, name: str, revision: str, folder: str | None = None
) -> Response:
    """GET /api/{type}s/{repo}/tree/{rev}[/{folder}]?recursive=&expand=, paginated."""
    repo = api_repo(types, namespace, name)
    commit = ctx.store.resolve(repo, unquote(revision))
    folder = unquote(folder or "").strip("/")
    prefix = f"{folder}/" if folder else ""
    below = [path for path in commit.files if path.startswith(prefix)]
    if folder and (folder in commit.files or not below):
        raise entry_not_found(folder, commit.id)
    paths: set[str] = set()
    for path in below:
        parts = path[len(prefix) :].split("/")
        depth = len(parts) if req.flag("recursive") else 1
        paths.update(prefix + "/".join(parts[:i]) for i in range(1, min(depth, len(parts)) + 1))
    expand = req.flag("expand")
    page, headers = _page(ctx, req, sorted(paths), TREE_PAGE_EXPANDED if expand else TREE_PAGE)
    return json_response([_item(ctx, repo, commit, path, expand) for path in page], headers=headers)


def paths_info(ctx: Context, req: Request, types: str, namespace: str, name: str, revision: str) -> Response:
    """POST /api/{type}s/{repo}/paths-info/{rev} (form: paths=..&expand=..); missing paths are left out."""
    repo = api_repo(types, namespace, name)
    commit = ctx.store.resolve(repo, unquote(revision))
    form = parse_qs(req.body().decode(), keep_blank_values=True)
    expand = form.get("expand", ["false"])[0].lower() in ("true", "1")
    found = []
    for path in dict.fromkeys(p.strip("/") for p in form.get("paths", [])):
        if path in commit.files or any(p.startswith(path + "/") for p in commit.files):
            found.append(_item(ctx, repo, commit, path, expand))
    return json_response(found)


def commits(ctx: Context, req: Request, types: str, namespace: str, name: str, revision: str) -> Response:
    """GET /api/{type}s/{repo}/commits/{rev}: first-parent history, newest first, paginated."""
    repo = api_repo(types, namespace, name)
    history = ctx.store.history(repo, ctx.store.resolve(repo, unquote(revision)).id)
    page, headers = _page(ctx, req, history, COMMITS_PAGE)
    items = [
        {"id": c.id, "title": c.title, "message": c.message, "date": c.date, "authors": [{"user": AUTHOR}]}
        for c in page
    ]
    return json_response(items, headers=headers)


def refs(ctx: Context, req: Request, types: str, namespace: str, name: str) -> Response:
    """GET /api/{type}s/{repo}/refs: branches and tags with their target commits."""
    repo = api_repo(types, namespace, name)
    ctx.store.require(repo)
    all_refs = ctx.store.refs(repo)

    def listing(kind: str, prefix: str) -> list[dict[str, str]]:
        return [{"name": n, "ref": f"{prefix}{n}", "targetCommit": sha} for n, sha in sorted(all_refs[kind].items())]

    data: dict[str, Any] = {
        "branches": listing("branches", "refs/heads/"),
        "converts": [],
        "tags": listing("tags", "refs/tags/"),
    }
    if req.flag("include_prs"):
        data["pullRequests"] = []
    return json_response(data)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, length) of a single `Range: bytes=...` request; None serves the whole file.

    Malformed or multi-range headers are ignored (RFC 9110 allows it); an unsatisfiable
    range is a 416 with `Content-Range: bytes */size`.
    """
    match = _RANGE.fullmatch((header or "").replace(" ", ""))
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(size - int(last), 0), size - 1
    if start >= size or end < start:
        message = f"Range '{header}' is outside the file ({size} bytes)"
        raise HubError(416, message, headers={"Content-Range": f"bytes */{size}"})
    return start, end - start + 1


def resolve(
    ctx: Context, req: Request, datasets: str | None, namespace: str, name: str, revision: str, path: str
) -> Response:
    """GET/HEAD /[datasets/]{repo}/resolve/{rev}/{path}: the file, with the Hub's metadata headers.

    ETag is the git blob id for regular files; LFS files add X-Linked-Etag (sha256) and
    X-Linked-Size. X-Repo-Commit names the resolved commit. Served directly, no CDN redirect.
    """
    repo = web_repo(datasets, namespace, name)
    commit = ctx.store.resolve(repo, unquote(revision))
    path = unquote(path)
    entry = commit.files.get(path)
    if entry is None:
        raise entry_not_found(path, commit.id)
    blob = ctx.store.blob_path(repo, entry.sha256)
    size = blob.stat().st_size
    headers = {
        "X-Repo-Commit": commit.id,
        "ETag": f'"{entry.sha256 if entry.lfs else entry.oid}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
    }
    if entry.lfs:
        headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
    span = _byte_range(req.headers.get("Range"), size)
    if span is None:
        return Response(200, headers, file=blob, length=size)
    start, length = span
    headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    return Response(206, headers, file=blob, offset=start, length=length)
