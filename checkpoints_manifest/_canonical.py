"""The one canonical JSON encoding, so equal content always means equal bytes."""

import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """`obj` as JSON: indent 2, sorted keys, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"
