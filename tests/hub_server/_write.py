"""Write endpoints: create repo, preupload, commit (NDJSON), tags, branches, validate-yaml.

Payloads are what huggingface_hub 2.4.0 sends (hf_api.py: create_repo, create_tag,
create_branch, _validate_yaml; _commit_api.py: _fetch_upload_modes, _prepare_commit_payload).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import unquote

from . import _card, _rules
from ._context import Context, api_repo
from ._errors import HubError, bad_request, revision_not_found
from ._http import Request, Response, json_response
from ._store import Commit, Entry, Repo, lfs_entry

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_RESERVED_NAMESPACES = {"api", "datasets", "models", "spaces"}
_SHA1 = re.compile(r"[0-9a-f]{40}")


def _check_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or "--" in value or ".." in value:
        raise bad_request(
            f"Invalid {kind} {value!r}: use letters, digits, '-', '_', '.', at most 96 characters, "
            "not starting or ending with '-' or '.', without '--' or '..'"
        )
    return value


def create_repo(ctx: Context, req: Request) -> Response:
    """POST /api/repos/create {name, organization, type, private|visibility}; 409 if it exists.

    The 409 body carries "url" because the client reads it when exist_ok=True.
    """
    req.require_token()
    body = req.json() or {}
    repo_type = body.get("type") or "model"
    if repo_type not in ("model", "dataset"):
        raise bad_request(f"Repo type {repo_type!r} is not served by the test server: use 'model' or 'dataset'")
    namespace = body.get("organization")
    if not namespace:
        raise bad_request("Give the namespace: repo_id must be 'namespace/name' (the test server has no users)")
    if namespace in _RESERVED_NAMESPACES:
        raise bad_request(f"Namespace '{namespace}' is reserved by the Hub; pick another")
    repo = Repo(repo_type, f"{_check_name('namespace', namespace)}/{_check_name('repo name', body.get('name'))}")
    private = bool(body.get("private")) or body.get("visibility") == "private"
    url = ctx.repo_url(repo)
    if not ctx.store.create(repo, private=private, gitattributes=_rules.default_gitattributes(repo_type)):
        raise HubError(409, f"You already created this {repo_type} repo: {repo.id}", extra={"url": url})
    return json_response({"url": url, "name": repo.id, "id": repo.id})


def _text(ctx: Context, repo: Repo, commit: Commit, path: str) -> str:
    entry = commit.files.get(path)
    return ctx.store.read(repo, entry).decode("utf-8", "replace") if entry else ""


def _no_pull_requests(req: Request) -> None:
    if req.flag("create_pr"):
        raise HubError(501, "create_pr is not implemented by the test server; commit to a branch instead")


def preupload(ctx: Context, req: Request, types: str, namespace: str, name: str, revision: str) -> Response:
    """POST /api/{type}s/{repo}/preupload/{rev}: upload mode, shouldIgnore and current oid per file.

    The oid (sha256 for LFS files, git blob id otherwise) lets the client skip unchanged
    files, which is how "upload again" makes no empty commit.
    """
    req.require_token()
    _no_pull_requests(req)
    repo = api_repo(types, namespace, name)
    commit = ctx.store.resolve(repo, unquote(revision))
    body = req.json() or {}
    gitattributes = _text(ctx, repo, commit, ".gitattributes")
    gitignore = body.get("gitIgnore")
    gitignore = _text(ctx, repo, commit, ".gitignore") if gitignore is None else gitignore
    answers = []
    for file in body.get("files") or []:
        try:
            path, size, sample = file["path"], int(file["size"]), base64.b64decode(file["sample"])
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            raise bad_request(f"Each preupload file needs path, size and base64 sample: {error!r}") from error
        answer: dict[str, Any] = {
            "path": path,
            "uploadMode": _rules.upload_mode(path, size, sample, gitattributes),
            "shouldIgnore": _rules.is_ignored(path, gitignore),
        }
        existing = commit.files.get(path)
        if existing is not None:
            answer["oid"] = existing.sha256 if existing.lfs else existing.oid
        answers.append(answer)
    return json_response({"files": answers, "commitOid": commit.id})


def _parse_ndjson(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    except ValueError as error:
        raise bad_request(f"Commit payload is not NDJSON: {error}") from error
    if not lines or lines[0].get("key") != "header":
        raise bad_request('The first NDJSON line of a commit must be {"key": "header", ...}')
    header = lines[0].get("value") or {}
    if not header.get("summary"):
        raise bad_request("Commit header needs a non-empty 'summary' (the commit message)")
    return header, lines[1:]


def _apply(ctx: Context, repo: Repo, files: dict[str, Entry], key: str, value: dict[str, Any]) -> None:
    """Apply one NDJSON operation to the file table being built."""
    path = str(value.get("path", "")).strip("/")
    if not path or any(part in ("", ".", "..") for part in path.split("/")) or path.startswith(".git/"):
        raise bad_request(f"Invalid path in repo: {value.get('path')!r}")
    if key == "file":
        try:
            if value.get("encoding") != "base64":
                raise ValueError("only base64 encoding is supported")
            content = base64.b64decode(value.get("content", ""), validate=True)
        except (ValueError, binascii.Error) as error:
            raise bad_request(f"file '{path}': content is not base64 ({error})") from error
        files[path] = ctx.store.add_regular(repo, content)
    elif key == "lfsFile":
        oid = str(value.get("oid"))
        stored = ctx.store.blob_size(repo, oid)
        if stored is None or value.get("size", stored) != stored:
            raise bad_request(
                f"lfsFile '{path}': LFS object {oid} (size {value.get('size')}) was never uploaded to "
                f"{repo.id}; upload it through the LFS batch API before committing"
            )
        files[path] = lfs_entry(oid, stored)
    elif key == "deletedFile":
        if files.pop(path, None) is None:
            raise HubError(404, f"A file with this name doesn't exist: '{path}'", code="EntryNotFound")
    elif key == "deletedFolder":
        inside = [p for p in files if p.startswith(path + "/")]
        if not inside:
            raise HubError(404, f"A folder with this name doesn't exist: '{path}'", code="EntryNotFound")
        for p in inside:
            del files[p]
    else:
        raise bad_request(f"Unknown commit operation {key!r}: expected file, lfsFile, deletedFile or deletedFolder")


def commit(ctx: Context, req: Request, types: str, namespace: str, name: str, revision: str) -> Response:
    """POST /api/{type}s/{repo}/commit/{branch}: NDJSON header + operations -> a new commit.

    A `parentCommit` that is not the branch head fails with 412, like the Hub; all checks
    pass before anything is written, so a refused commit changes nothing.
    """
    req.require_token()
    _no_pull_requests(req)
    repo = api_repo(types, namespace, name)
    branch = unquote(revision)
    header, operations = _parse_ndjson(req.body())
    with ctx.store.lock:
        ctx.store.require(repo)
        head_sha = ctx.store.refs(repo)["branches"].get(branch)
        if head_sha is None:
            ctx.store.resolve(repo, branch)  # RevisionNotFound unless it is a tag or a commit
            raise bad_request(f"Revision '{branch}' is not a branch: commits go to branches only")
        parent = header.get("parentCommit")
        if parent and not head_sha.startswith(str(parent).lower()):
            raise HubError(
                412,
                f"A commit has happened since: parentCommit {parent} is not the head of '{branch}' "
                f"({head_sha}); fetch the new head and retry",
            )
        files = dict(ctx.store.load_commit(repo, head_sha).files)
        for operation in operations:
            _apply(ctx, repo, files, operation.get("key"), operation.get("value") or {})
        new = ctx.store.write_commit(repo, branch, head_sha, header["summary"], header.get("description", ""), files)
    url = ctx.commit_url(repo, new.id)
    return json_response(
        {"success": True, "commitOid": new.id, "commitUrl": url, "hookOutput": "", "pullRequestUrl": None}
    )


def _new_ref_name(ctx: Context, repo: Repo, name: Any) -> str:
    refs = ctx.store.refs(repo)
    if not isinstance(name, str) or not name.strip() or _SHA1.fullmatch(name) or name != name.strip():
        raise bad_request(f"Invalid tag or branch name {name!r}")
    if name in refs["branches"] or name in refs["tags"]:
        raise HubError(409, f"Reference already exists: '{name}' is already a branch or tag of {repo.id}")
    return name


def create_tag(ctx: Context, req: Request, types: str, namespace: str, name: str, revision: str) -> Response:
    """POST /api/{type}s/{repo}/tag/{rev} {"tag", "message"}: tag the revision; 409 if the name is taken."""
    req.require_token()
    repo = api_repo(types, namespace, name)
    target = ctx.store.resolve(repo, unquote(revision))
    with ctx.store.lock:
        tag = _new_ref_name(ctx, repo, (req.json() or {}).get("tag"))
        ctx.store.set_ref(repo, "tags", tag, target.id)
    return json_response({})


def create_branch(ctx: Context, req: Request, types: str, namespace: str, name: str, branch: str) -> Response:
    """POST /api/{type}s/{repo}/branch/{branch} {"startingPoint"}: new branch, from main by default."""
    req.require_token()
    repo = api_repo(types, namespace, name)
    start = ctx.store.resolve(repo, (req.json() or {}).get("startingPoint") or "main")
    with ctx.store.lock:
        ctx.store.set_ref(repo, "branches", _new_ref_name(ctx, repo, unquote(branch)), start.id)
    return json_response({})


def _delete_ref(ctx: Context, req: Request, kind: str, repo: Repo, ref: str) -> Response:
    req.require_token()
    ctx.store.require(repo)
    with ctx.store.lock:
        if ref not in ctx.store.refs(repo)[kind]:
            raise revision_not_found(ref)
        if kind == "branches" and ref == "main":
            raise HubError(403, "Cannot delete the default branch 'main'")
        ctx.store.set_ref(repo, kind, ref, None)
    return json_response({})


def delete_tag(ctx: Context, req: Request, types: str, namespace: str, name: str, tag: str) -> Response:
    """DELETE /api/{type}s/{repo}/tag/{tag}."""
    return _delete_ref(ctx, req, "tags", api_repo(types, namespace, name), unquote(tag))


def delete_branch(ctx: Context, req: Request, types: str, namespace: str, name: str, branch: str) -> Response:
    """DELETE /api/{type}s/{repo}/branch/{branch}."""
    return _delete_ref(ctx, req, "branches", api_repo(types, namespace, name), unquote(branch))


def validate_yaml(ctx: Context, req: Request) -> Response:
    """POST /api/validate-yaml {"content", "repoType"}: 400 with errors, else 200 with warnings."""
    errors, warnings = _card.validate(str((req.json() or {}).get("content", "")))
    body = {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]}
    if errors:
        return json_response(body, status=400, headers={"X-Error-Message": "Invalid README.md metadata"})
    return json_response(body)


def xet_token(ctx: Context, req: Request, *_: str) -> Response:
    """The Xet protocol is not served; say how to make the client use plain LFS instead."""
    raise HubError(501, "The test server speaks LFS, not Xet: set HF_HUB_DISABLE_XET=1 in the client's environment")
