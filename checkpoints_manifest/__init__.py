"""checkpoints_manifest: the leaf layer. What makes a run directory valid and provable.

A run directory is valid once its manifest lists every file with size and
sha256; `verify` checks a directory against it. Every file in the project is
written through `atomic_write*` (temp file, fsync, rename), and every JSON document
that comes from outside is read through `parse_json`/`read_json` (bounded size,
values and depth). Imports nothing of ours.
"""

from ._atomic import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    discard_temp_files,
    fsync_path,
)
from ._canonical import canonical_json
from ._environment import (
    KERNEL_ENVIRONMENT_VARIABLES,
    PRECISION_SETTINGS,
    EnvironmentRecord,
    environment_record,
    torch_setting,
)
from ._errors import ManifestError, ManifestNotFoundError
from ._hashing import sha256_bytes, sha256_file
from ._json import MAX_JSON_BYTES, UnsafeJSONError, parse_json, read_json
from ._lock import LockHeldError, acquire_lock, held_lock
from ._manifest import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    FileEntry,
    Manifest,
    PlatformChange,
    code_version,
    file_entry,
    read_manifest,
    write_manifest,
)
from ._verify import Mismatch, verify

__all__ = [
    "KERNEL_ENVIRONMENT_VARIABLES",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "MAX_JSON_BYTES",
    "LockHeldError",
    "EnvironmentRecord",
    "FileEntry",
    "Manifest",
    "ManifestError",
    "ManifestNotFoundError",
    "Mismatch",
    "PRECISION_SETTINGS",
    "PlatformChange",
    "UnsafeJSONError",
    "acquire_lock",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "canonical_json",
    "code_version",
    "discard_temp_files",
    "environment_record",
    "file_entry",
    "fsync_path",
    "held_lock",
    "parse_json",
    "read_json",
    "read_manifest",
    "sha256_bytes",
    "sha256_file",
    "torch_setting",
    "verify",
    "write_manifest",
]
