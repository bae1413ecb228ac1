"""Checks shared by the JSON readers: exact keys, exact types, safe relative paths.

Messages name the key (`files["a/b"].size`) but not the source; `Manifest.from_json`
prefixes the source so one message says where and what.
"""

from typing import Any

from ._errors import ManifestError

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "a boolean",
    dict: "an object",
    list: "a list",
}


def check_keys(d: Any, expected: set[str], where: str) -> None:
    """Refuse `d` unless it is an object with exactly the `expected` keys."""
    if not isinstance(d, dict):
        raise ManifestError(f"{where} must be an object, got {_describe(d)}")
    missing = sorted(expected - d.keys())
    unknown = sorted(d.keys() - expected)
    if missing:
        raise ManifestError(f"{where} is missing key(s) {', '.join(missing)}")
    if unknown:
        raise ManifestError(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"expected only {', '.join(sorted(expected))}"
        )


def check_type(value: Any, kind: type, where: str, *, optional: bool = False) -> None:
    """Refuse `value` unless it is exactly of `kind` (bool is not an int), or None if optional."""
    if optional and value is None:
        return
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        wanted = _TYPE_NAMES[kind] + (" or null" if optional else "")
        raise ManifestError(f"{where} must be {wanted}, got {_describe(value)}")


def relpath_problem(path: str) -> str | None:
    """Why `path` is not a safe relative POSIX path inside a run dir, or None if it is."""
    if not path:
        return "is empty"
    if "\\" in path:
        return "contains a backslash; use '/' (POSIX) separators"
    if "\x00" in path:
        return "contains a NUL character"
    if path.startswith("/"):
        return "is absolute; paths are relative to the run dir"
    parts = path.split("/")
    if ".." in parts:
        return "contains '..'; paths must stay inside the run dir"
    if "." in parts or "" in parts:
        return "is not normalized (has '.', '//' or a trailing '/'); write it as a/b/c"
    return None


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:200]
