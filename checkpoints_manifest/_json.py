"""The one reader for JSON that comes from outside: bounded in size, items and depth before it is parsed.

A registry, manifest, config.json, dataset metadata or safetensors header may be hostile or damaged.
Plain `json.loads` recurses once per nesting level (100,000 levels end in a RecursionError traceback)
and builds a Python object per value (60 MB of `[],` is 1.9 GB of lists). Here both are bounded
first, at C speed on the raw bytes: the size, the number of values (every value after the first in
a container follows a comma, so commas and brackets bound them) and the nesting depth.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ._errors import ManifestError

MAX_JSON_BYTES = 64 << 20  # manifests of datasets with ~300k chunk files stay below this
MAX_JSON_ITEMS = 2_000_000  # commas and brackets: at most ~130 MB of Python objects
MAX_JSON_DEPTH = 64  # our records nest 5 deep
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class UnsafeJSONError(ManifestError):
    """A JSON document (a file, or a safetensors header) is malformed, too large or nested too deep;
    refused before it could cost memory or a recursion. The message names the source and the limit."""


def parse_json(data: bytes, *, source: str, max_bytes: int = MAX_JSON_BYTES, allow_nan: bool = False) -> Any:
    """The value of the JSON document `data`, refused (UnsafeJSONError naming `source`) when it is
    larger than `max_bytes`, holds more than MAX_JSON_ITEMS commas and brackets or nests deeper than
    MAX_JSON_DEPTH, has a repeated key or (unless `allow_nan`: the loss logs written before they were
    strict JSON) NaN/Infinity, or is not UTF-8 JSON."""
    if len(data) > max_bytes:
        raise UnsafeJSONError(f"{source}: {len(data):,} bytes, more than the {max_bytes:,} a JSON record may "
                              f"have; refused unparsed")
    items = sum(data.count(c) for c in (b",", b"[", b"]", b"{", b"}"))
    if items > MAX_JSON_ITEMS:
        raise UnsafeJSONError(f"{source}: {items:,} commas and brackets, more than the {MAX_JSON_ITEMS:,} a "
                              f"JSON record may have; refused unparsed")
    _check_depth(data, source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnsafeJSONError(f"{source}: not utf-8 text ({e})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=None if allow_nan else _no_constant)
    except _Refused as e:
        raise UnsafeJSONError(f"{source}: {e}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UnsafeJSONError(f"{source}: not valid JSON ({e})") from None


def read_json(path: str | os.PathLike, *, source: str | None = None, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """`parse_json` of a file, whose size is checked before a byte is read."""
    path = Path(path)
    source = source or str(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise UnsafeJSONError(f"{source}: {size:,} bytes, more than the {max_bytes:,} a JSON record may have; "
                              f"refused unread")
    return parse_json(path.read_bytes(), source=source, max_bytes=max_bytes)


def _check_depth(data: bytes, source: str) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH: strings out, then innermost pairs peeled level by level.

    Brackets that do not pair up are left to the parser, which says where (and stops at its
    recursion limit, caught, if they nest without end)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        peeled = _INNERMOST.sub(b"", brackets)
        if peeled == brackets:
            return
        brackets = peeled
    if _INNERMOST.search(brackets):
        raise UnsafeJSONError(f"{source}: nested more than {MAX_JSON_DEPTH} levels deep; refused unparsed")


class _Refused(ValueError):
    """Valid JSON syntax that a record must not hold."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    """Refuse a repeated key, which plain json.loads would silently resolve to the last."""
    d = {}
    for key, value in pairs:
        if key in d:
            raise _Refused(f"key {key!r} appears twice in one object")
        d[key] = value
    return d


def _no_constant(name: str) -> None:
    raise _Refused(f"{name} is not valid JSON")
