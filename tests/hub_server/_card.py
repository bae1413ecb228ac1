"""README.md metadata: the YAML block between leading `---` lines (model/dataset card).

Used by /api/validate-yaml (which the client calls before committing a README.md) and by
repo info (`cardData`). Parsed with PyYAML, which huggingface_hub itself depends on.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_FRONT_MATTER = re.compile(r"\A\s*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|\Z)", re.DOTALL)
_STRING_FIELDS = ("license", "library_name", "pipeline_tag")
_LIST_FIELDS = ("tags", "datasets", "language", "metrics", "base_model")


class CardError(ValueError):
    """The README's metadata block is not a YAML mapping."""


def metadata(readme: str) -> dict[str, Any] | None:
    """The metadata mapping, None when the README has no metadata block."""
    match = _FRONT_MATTER.match(readme)
    if match is None:
        return None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        raise CardError(f"Invalid YAML in README.md metadata: {error}") from error
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CardError(f"README.md metadata must be a YAML mapping, got {type(data).__name__}")
    return data


def validate(readme: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a README, checking the field types the Hub is strict about."""
    try:
        data = metadata(readme)
    except CardError as error:
        return [str(error)], []
    if data is None:
        return [], ["empty or missing yaml metadata in repo card"]
    errors = [f'"{key}" must be a string' for key in _STRING_FIELDS if key in data and not isinstance(data[key], str)]
    for key in _LIST_FIELDS:
        value = data.get(key)
        items = [value] if isinstance(value, str) else value
        if key in data and not (isinstance(items, list) and all(isinstance(item, str) for item in items)):
            errors.append(f'"{key}" must be a string or a list of strings')
    return errors, []
