"""Git LFS over HTTP: the batch API, the upload PUT and the verify call (basic transfer).

The batch answer points the client at an upload URL signed for (repo, oid, size), the
way the Hub hands out pre-signed storage URLs: the PUT carries no token, the signature
is the permission. Objects already stored come back without actions (nothing to send).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from ._context import Context, web_repo
from ._errors import HubError, bad_request
from ._http import Request, Response, json_response
from ._store import Repo

_OID = re.compile(r"[0-9a-f]{64}")
_LFS_JSON = {"Content-Type": "application/vnd.git-lfs+json"}


def _signature(ctx: Context, repo: Repo, oid: str, size: int) -> str:
    return hmac.new(ctx.secret, f"{repo.type}/{repo.id}/{oid}/{size}".encode(), hashlib.sha256).hexdigest()


def _git_url(ctx: Context, repo: Repo, tail: str) -> str:
    return f"{ctx.endpoint}/{repo.url_prefix}{repo.id}.git/info/lfs/objects/{tail}"


def batch(ctx: Context, req: Request, datasets: str | None, namespace: str, name: str) -> Response:
    """POST /[datasets/]{repo}.git/info/lfs/objects/batch: upload actions for missing objects."""
    req.require_token()
    repo = web_repo(datasets, namespace, name)
    ctx.store.require(repo)
    body = req.json() or {}
    if body.get("operation") != "upload":
        raise bad_request("Only the LFS 'upload' operation is served; downloads go through /resolve")
    if "basic" not in body.get("transfers", ["basic"]):
        raise bad_request("Only the 'basic' LFS transfer is served")
    objects: list[dict[str, Any]] = []
    for obj in body.get("objects") or []:
        oid, size = obj.get("oid"), obj.get("size")
        if not isinstance(oid, str) or not _OID.fullmatch(oid) or not isinstance(size, int) or size < 0:
            objects.append({"oid": str(oid), "size": size if isinstance(size, int) else -1,
                            "error": {"code": 422, "message": "oid must be a sha256 and size an int >= 0"}})
        elif ctx.store.blob_size(repo, oid) == size:
            objects.append({"oid": oid, "size": size})
        else:
            upload = f"{_git_url(ctx, repo, oid)}?size={size}&sig={_signature(ctx, repo, oid, size)}"
            objects.append({
                "oid": oid,
                "size": size,
                "authenticated": True,
                "actions": {
                    "upload": {"href": upload, "expires_in": 3600},
                    "verify": {"href": _git_url(ctx, repo, "verify"), "header": {}},
                },
            })
    return json_response({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, headers=_LFS_JSON)


def upload(ctx: Context, req: Request, datasets: str | None, namespace: str, name: str, oid: str) -> Response:
    """PUT {signed upload href}: store the bytes only if they hash to `oid` and have the signed size."""
    repo = web_repo(datasets, namespace, name)
    ctx.store.require(repo)
    size = req.arg("size")
    if not size.isdigit() or not hmac.compare_digest(req.arg("sig"), _signature(ctx, repo, oid, int(size))):
        raise HubError(403, "Upload URL signature does not match: use the href the LFS batch API returned")
    ctx.store.add_blob(repo, req.chunks(), sha256=oid, size=int(size))
    return Response(200, {"ETag": f'"{oid}"'})


def verify(ctx: Context, req: Request, datasets: str | None, namespace: str, name: str) -> Response:
    """POST {verify href} {"oid", "size"}: 200 once the object is stored with that size, else 404."""
    req.require_token()
    repo = web_repo(datasets, namespace, name)
    ctx.store.require(repo)
    body = req.json() or {}
    oid, size = str(body.get("oid")), body.get("size")
    if not _OID.fullmatch(oid) or ctx.store.blob_size(repo, oid) != size:
        raise HubError(404, f"LFS object {oid} with size {size} is not stored in {repo.id}; upload it first")
    return json_response({"success": True}, headers=_LFS_JSON)
