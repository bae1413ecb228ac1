"""URL -> handler table. Paths are matched still percent-encoded, so an encoded "/" in a
revision ("refs%2Fpr%2F1") stays inside its segment; handlers unquote the pieces."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from . import _lfs, _read, _write
from ._context import Context
from ._errors import HubError
from ._http import Request, Response

_API = r"/api/(models|datasets)/([^/]+)/([^/]+)"
_GIT = r"/(?:(datasets)/)?([^/]+)/([^/]+)\.git/info/lfs/objects"
_SEG = r"([^/]+)"

ROUTES: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in [
        ("POST", r"/api/repos/create", _write.create_repo),
        ("POST", r"/api/validate-yaml", _write.validate_yaml),
        ("GET", _API, _read.repo_info),
        ("GET", rf"{_API}/revision/{_SEG}", _read.repo_info),
        ("GET", rf"{_API}/tree/{_SEG}(?:/(.*))?", _read.tree),
        ("POST", rf"{_API}/paths-info/{_SEG}", _read.paths_info),
        ("GET", rf"{_API}/commits/{_SEG}", _read.commits),
        ("GET", rf"{_API}/refs", _read.refs),
        ("POST", rf"{_API}/preupload/{_SEG}", _write.preupload),
        ("POST", rf"{_API}/commit/{_SEG}", _write.commit),
        ("POST", rf"{_API}/tag/{_SEG}", _write.create_tag),
        ("DELETE", rf"{_API}/tag/{_SEG}", _write.delete_tag),
        ("POST", rf"{_API}/branch/{_SEG}", _write.create_branch),
        ("DELETE", rf"{_API}/branch/{_SEG}", _write.delete_branch),
        ("GET", rf"{_API}/xet-(?:read|write)-token/{_SEG}", _write.xet_token),
        ("POST", rf"{_GIT}/batch", _lfs.batch),
        ("POST", rf"{_GIT}/verify", _lfs.verify),
        ("PUT", rf"{_GIT}/([0-9a-f]{{64}})", _lfs.upload),
        ("GET", rf"/(?:(datasets)/)?([^/]+)/([^/]+)/resolve/{_SEG}/(.+)", _read.resolve),
    ]
]


def dispatch(ctx: Context, req: Request) -> Response:
    """Run the handler whose pattern matches; HEAD runs the GET handler (the body is dropped)."""
    allowed = []
    for method, pattern, handler in ROUTES:
        match = pattern.fullmatch(req.path)
        if match is None:
            continue
        if method == req.method or (method == "GET" and req.method == "HEAD"):
            return handler(ctx, req, *match.groups())
        allowed.append(method)
    if allowed:
        raise HubError(405, f"{req.method} is not allowed on {req.path} (allowed: {', '.join(allowed)})")
    raise HubError(
        404,
        f"The test server has no endpoint {req.method} {req.path}; tests/hub_server/README.md lists what it serves",
    )


def dispatcher(ctx: Context) -> Callable[[Request], Response]:
    """`dispatch` bound to one server's context, for the HTTP layer."""
    return partial(dispatch, ctx)
