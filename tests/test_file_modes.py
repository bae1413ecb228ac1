"""Every file and folder the project writes honours the umask (shared cluster filesystems): checkpoints,
manifests, data, a published directory root and the HF cache a download fills; none is private (0600)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hub_server import HubServer

UMASK = 0o002  # group-writable: tells "honours the umask" apart from any fixed mode


def test_every_file_written_honours_the_umask(hub_server: HubServer, tmp_path: Path) -> None:
    out, root, cache = tmp_path / "out", tmp_path / "root", tmp_path / "hf"
    script = ("from zoo.cli import main\n"
              f"assert main(['train', 'tiny', '--runs', 'gelu-1l-seed0', '--out', {str(out)!r}, '--quiet']) == 0\n"
              f"assert main(['publish', {str(out / 'tiny')!r}, '--org', 'me', '--root', {str(root)!r}]) == 0\n"
              f"assert main(['publish', {str(out / 'tiny')!r}, '--org', 'me']) == 0\n"
              "assert main(['download', 'gelu-1l', '--seed', '0', '--step', '24', '--org', 'me']) == 0\n")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, preexec_fn=lambda: os.umask(UMASK),
                   env={**os.environ, "HF_HUB_CACHE": str(cache)})
    written = [p for top in (out, root, cache) for p in top.rglob("*") if not p.is_symlink()]
    assert any(p.name == "model.safetensors" for p in written) and any(p.parent.name == "blobs" for p in written)
    wrong = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in written
             if p.stat().st_mode & 0o777 != (0o777 if p.is_dir() else 0o666) & ~UMASK}
    assert wrong == {}
