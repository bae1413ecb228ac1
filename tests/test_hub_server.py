"""The Hub-API test server, checked with the real huggingface_hub client against its documented behaviour."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import get_session

from hub_server import HubServer, serve
from hub_server.fixture import hub_server  # noqa: F401  (the fixture, until conftest imports it)

REPO = "zoo-org/tiny"
WEIGHTS = bytes(range(256)) * 40  # binary, named *.safetensors: LFS twice over


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def _publish(tmp_path: Path, files: dict[str, bytes], repo_id: str = REPO, **kwargs) -> str:
    """Create the repo if needed and upload `files` in one commit; returns the commit sha."""
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True, repo_type=kwargs.get("repo_type"))
    folder = _folder(tmp_path / hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest(), files)
    return api.upload_folder(repo_id=repo_id, folder_path=folder, **kwargs).oid


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def test_create_repo_twice_conflicts_and_exist_ok_accepts_it(hub_server: HubServer) -> None:
    api = HfApi()
    url = api.create_repo(REPO)
    assert url == f"{hub_server.endpoint}/{REPO}" and url.repo_id == REPO
    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo(REPO)
    assert error.value.response.status_code == 409
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO
    # Like the Hub, a new repo holds one "initial commit" with the default .gitattributes.
    assert api.list_repo_files(REPO) == [".gitattributes"]
    assert len(hub_server.commits(REPO)) == 1


def test_upload_mode_is_lfs_by_gitattributes_binary_sample_or_size(hub_server: HubServer, tmp_path: Path) -> None:
    files = {
        "config.json": b'{"d_model": 8}',
        "text.safetensors": b"not binary, but *.safetensors is an LFS pattern",
        "store/c/0/0": b"\x00\x01zarr chunk",
        "big.txt": b"a" * 10_000_001,
    }
    _publish(tmp_path, files)
    infos = {info.path: info for info in HfApi().get_paths_info(REPO, list(files))}
    assert infos["config.json"].lfs is None
    for path in ("text.safetensors", "store/c/0/0", "big.txt"):
        assert infos[path].lfs is not None and infos[path].lfs.sha256 == hashlib.sha256(files[path]).hexdigest()
    for path, data in files.items():
        assert _read(hf_hub_download(REPO, path)) == data


def test_download_after_second_commit_is_new_and_first_sha_is_old(hub_server: HubServer, tmp_path: Path) -> None:
    first = _publish(tmp_path, {"notes.txt": b"v1", "model.safetensors": WEIGHTS})
    second = _publish(tmp_path, {"notes.txt": b"v2", "model.safetensors": WEIGHTS[::-1]})
    assert hub_server.commits(REPO)[:2] == [second, first]
    assert _read(hf_hub_download(REPO, "notes.txt")) == b"v2"
    assert _read(hf_hub_download(REPO, "model.safetensors")) == WEIGHTS[::-1]
    assert _read(hf_hub_download(REPO, "notes.txt", revision=first)) == b"v1"
    assert _read(hf_hub_download(REPO, "model.safetensors", revision=first)) == WEIGHTS


def test_tags_and_branches_are_revisions(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    first = _publish(tmp_path, {"notes.txt": b"v1"})
    api.create_tag(REPO, tag="v1")
    with pytest.raises(HfHubHTTPError) as error:
        api.create_tag(REPO, tag="v1")
    assert error.value.response.status_code == 409
    api.create_tag(REPO, tag="v1", exist_ok=True)
    _publish(tmp_path, {"notes.txt": b"v2"})
    assert _read(hf_hub_download(REPO, "notes.txt", revision="v1")) == b"v1"

    api.create_branch(REPO, branch="dev", revision="v1")
    api.upload_file(path_or_fileobj=b"dev", path_in_repo="notes.txt", repo_id=REPO, revision="dev")
    assert _read(hf_hub_download(REPO, "notes.txt", revision="dev")) == b"dev"
    assert _read(hf_hub_download(REPO, "notes.txt")) == b"v2"

    refs = api.list_repo_refs(REPO)
    assert {tag.name: tag.target_commit for tag in refs.tags} == {"v1": first}
    assert {branch.name for branch in refs.branches} == {"main", "dev"}
    api.delete_tag(REPO, tag="v1")
    api.delete_branch(REPO, branch="dev")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "notes.txt", revision="v1", force_download=True)
    assert [branch.name for branch in api.list_repo_refs(REPO).branches] == ["main"]


def test_listings_agree(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    step = "checkpoints/step00000001"
    files = {"config.json": b"{}", f"{step}/model.safetensors": WEIGHTS, f"{step}/state.json": b"{}"}
    sha = _publish(tmp_path, files)
    expected = sorted([".gitattributes", *files])
    assert api.list_repo_files(REPO) == expected
    tree = list(api.list_repo_tree(REPO, recursive=True))
    assert sorted(entry.path for entry in tree if hasattr(entry, "size")) == expected
    assert {entry.path for entry in tree if not hasattr(entry, "size")} == {"checkpoints", "checkpoints/step00000001"}
    assert [entry.path for entry in api.list_repo_tree(REPO)] == [".gitattributes", "checkpoints", "config.json"]
    assert [entry.path for entry in api.list_repo_tree(REPO, "checkpoints/step00000001")] == sorted(
        path for path in files if path.startswith("checkpoints/")
    )
    by_path = {info.path: info for info in api.get_paths_info(REPO, [*expected, "missing.txt", "checkpoints"])}
    assert set(by_path) == {*expected, "checkpoints"}
    info = api.model_info(REPO, files_metadata=True)
    assert info.sha == sha
    assert {s.rfilename: (s.size, s.blob_id) for s in info.siblings} == {
        e.path: (e.size, e.blob_id) for e in tree if hasattr(e, "size")
    } == {p: (i.size, i.blob_id) for p, i in by_path.items() if p != "checkpoints"}


def test_head_metadata_has_commit_etag_and_size(hub_server: HubServer, tmp_path: Path) -> None:
    sha = _publish(tmp_path, {"notes.txt": b"hello", "model.safetensors": WEIGHTS})
    regular = get_hf_file_metadata(hf_hub_url(REPO, "notes.txt"))
    lfs = get_hf_file_metadata(hf_hub_url(REPO, "model.safetensors"))
    git_oid = hashlib.sha1(b"blob 5\0hello").hexdigest()
    assert (regular.commit_hash, regular.etag, regular.size) == (sha, git_oid, 5)
    assert (lfs.commit_hash, lfs.etag, lfs.size) == (sha, hashlib.sha256(WEIGHTS).hexdigest(), len(WEIGHTS))


def test_range_requests_return_exact_slices(hub_server: HubServer, tmp_path: Path) -> None:
    _publish(tmp_path, {"model.safetensors": WEIGHTS})
    url, size = hf_hub_url(REPO, "model.safetensors"), len(WEIGHTS)
    cases = [("bytes=2-5", 2, 5), ("bytes=-3", size - 3, size - 1), (f"bytes={size - 4}-", size - 4, size - 1)]
    for header, start, end in cases:
        response = get_session().get(url, headers={"Range": header})
        assert response.status_code == 206 and response.content == WEIGHTS[start : end + 1]
        assert response.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert get_session().get(url, headers={"Range": f"bytes={size}-"}).status_code == 416
    # The client resumes an interrupted download with a Range request.
    partial = tmp_path / "partial"
    with partial.open("wb") as f:
        f.write(WEIGHTS[:1000])
        http_get(url, f, resume_size=1000, expected_size=size)
    assert partial.read_bytes() == WEIGHTS


def test_snapshot_download_matches_each_revision(hub_server: HubServer, tmp_path: Path) -> None:
    old = {"a.txt": b"a1", "w/model.safetensors": WEIGHTS}
    new = {"a.txt": b"a2", "b.txt": b"b"}
    first = _publish(tmp_path, old)
    _publish(tmp_path, new)

    def contents(folder: str) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}

    assert contents(snapshot_download(REPO, allow_patterns=["*.txt", "w/*"])) == {**old, **new}
    assert contents(snapshot_download(REPO, revision=first, allow_patterns=["*.txt", "w/*"])) == old


def test_corrupted_blob_downloads_different_bytes_under_the_same_etag(hub_server: HubServer, tmp_path: Path) -> None:
    _publish(tmp_path, {"notes.txt": b"hello world", "model.safetensors": WEIGHTS})
    etags = {path: get_hf_file_metadata(hf_hub_url(REPO, path)).etag for path in ("notes.txt", "model.safetensors")}
    hub_server.corrupt(REPO, "notes.txt")
    hub_server.corrupt(REPO, "model.safetensors")
    for path, good in (("notes.txt", b"hello world"), ("model.safetensors", WEIGHTS)):
        bad = _read(hf_hub_download(REPO, path))
        assert len(bad) == len(good) and bad != good
        assert get_hf_file_metadata(hf_hub_url(REPO, path)).etag == etags[path]


def test_errors_map_to_the_client_exception_classes(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    _publish(tmp_path, {"notes.txt": b"x"})
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("zoo-org/missing", "notes.txt")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("zoo-org/missing")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "notes.txt", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="0" * 40)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt")
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, "missing-folder"))
    assert not api.repo_exists("zoo-org/missing")
    assert not api.revision_exists(REPO, "no-such-branch")
    assert not api.file_exists(REPO, "missing.txt") and api.file_exists(REPO, "notes.txt")


def test_dataset_repos_work_like_model_repos_and_are_separate(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    first = _publish(tmp_path, {"index/zarr.json": b"{}", "tokens.npy": WEIGHTS}, repo_type="dataset")
    second = _publish(tmp_path, {"index/zarr.json": b'{"v": 2}'}, repo_type="dataset")
    assert hub_server.commits(REPO, repo_type="dataset")[:2] == [second, first]
    assert [c.commit_id for c in api.list_repo_commits(REPO, repo_type="dataset")][:2] == [second, first]
    assert _read(hf_hub_download(REPO, "tokens.npy", repo_type="dataset")) == WEIGHTS
    assert _read(hf_hub_download(REPO, "index/zarr.json", repo_type="dataset", revision=first)) == b"{}"
    assert api.dataset_info(REPO).sha == second
    assert Path(snapshot_download(REPO, repo_type="dataset"), "index/zarr.json").read_bytes() == b'{"v": 2}'
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(REPO)


def test_stale_parent_commit_is_refused_with_412_and_changes_nothing(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    first = _publish(tmp_path, {"notes.txt": b"v1"})
    second = _publish(tmp_path, {"notes.txt": b"v2"})
    operation = [CommitOperationAdd(path_in_repo="notes.txt", path_or_fileobj=b"v3")]
    with pytest.raises(HfHubHTTPError) as error:
        api.create_commit(REPO, operation, commit_message="stale", parent_commit=first)
    assert error.value.response.status_code == 412
    assert hub_server.commits(REPO)[0] == second
    operation = [CommitOperationAdd(path_in_repo="notes.txt", path_or_fileobj=b"v3")]
    third = api.create_commit(REPO, operation, commit_message="fresh", parent_commit=second).oid
    assert hub_server.commits(REPO)[:3] == [third, second, first]


def test_writes_need_a_token_and_reads_do_not(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi(token=False)
    _publish(tmp_path, {"notes.txt": b"x"})
    for write in (
        lambda: api.create_repo("zoo-org/other"),
        lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO),
        lambda: api.create_tag(REPO, tag="t"),
    ):
        with pytest.raises(HfHubHTTPError) as error:
            write()
        assert error.value.response.status_code == 401
    assert _read(hf_hub_download(REPO, "notes.txt", token=False)) == b"x"


def test_uploading_unchanged_files_makes_no_commit(hub_server: HubServer, tmp_path: Path) -> None:
    files = {"config.json": b"{}", "model.safetensors": WEIGHTS}
    sha = _publish(tmp_path, files)
    assert _publish(tmp_path, files) == sha
    assert hub_server.commits(REPO)[0] == sha and len(hub_server.commits(REPO)) == 2


def test_gitignored_files_are_left_out_of_the_commit(hub_server: HubServer, tmp_path: Path) -> None:
    _publish(tmp_path, {".gitignore": b"*.log\n", "run.log": b"\x00binary log", "notes.txt": b"kept"})
    assert HfApi().list_repo_files(REPO) == [".gitattributes", ".gitignore", "notes.txt"]


def test_readme_metadata_is_validated_and_shown_as_card_data(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    card = b"---\nlicense: apache-2.0\nlibrary_name: zoo\ntags:\n- interpretability\n---\n# tiny\n"
    _publish(tmp_path, {"README.md": card})
    info = api.model_info(REPO)
    assert info.card_data.license == "apache-2.0" and info.tags == ["interpretability"]
    for bad in (b"---\ntags: {a: 1}\n---\n", b"---\nlicense: [unclosed\n---\n"):
        with pytest.raises(ValueError, match="Invalid metadata in README.md"):
            api.upload_file(path_or_fileobj=bad, path_in_repo="README.md", repo_id=REPO)
    assert _read(hf_hub_download(REPO, "README.md")) == card


def test_subprocess_reaches_the_server_through_its_environment(hub_server: HubServer, tmp_path: Path) -> None:
    _publish(tmp_path, {"notes.txt": b"from the parent"})
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from huggingface_hub import HfApi, hf_hub_download
        print(Path(hf_hub_download("{REPO}", "notes.txt")).read_text())
        HfApi().upload_file(path_or_fileobj=b"\\x00child", path_in_repo="child.bin", repo_id="{REPO}")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from the parent"
    assert _read(hf_hub_download(REPO, "child.bin")) == b"\x00child"


def test_commit_naming_an_unuploaded_lfs_object_is_refused(hub_server: HubServer, tmp_path: Path) -> None:
    sha = _publish(tmp_path, {"notes.txt": b"x"})
    oid = hashlib.sha256(b"never uploaded").hexdigest()
    lines = [
        {"key": "header", "value": {"summary": "dangling"}},
        {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": oid, "size": 14}},
    ]
    payload = "".join(json.dumps(line) + "\n" for line in lines).encode()
    response = get_session().post(
        f"{hub_server.endpoint}/api/models/{REPO}/commit/main",
        content=payload,
        headers={"Authorization": f"Bearer {hub_server.token}", "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 400 and "never uploaded" in response.json()["error"]
    assert hub_server.commits(REPO)[0] == sha


def test_lfs_upload_of_wrong_bytes_stores_nothing(hub_server: HubServer) -> None:
    HfApi().create_repo(REPO)
    oid, auth = hashlib.sha256(WEIGHTS).hexdigest(), {"Authorization": f"Bearer {hub_server.token}"}
    batch_url = f"{hub_server.endpoint}/{REPO}.git/info/lfs/objects/batch"
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(WEIGHTS)}]}
    href = get_session().post(batch_url, json=batch, headers=auth).json()["objects"][0]["actions"]["upload"]["href"]
    assert get_session().put(href, content=WEIGHTS[::-1]).status_code == 400
    assert "actions" in get_session().post(batch_url, json=batch, headers=auth).json()["objects"][0]
    assert get_session().put(href, content=iter([WEIGHTS[:100], WEIGHTS[100:]])).status_code == 200  # chunked
    assert "actions" not in get_session().post(batch_url, json=batch, headers=auth).json()["objects"][0]


def test_upload_cut_off_midway_leaves_no_blob(hub_server: HubServer) -> None:
    HfApi().create_repo(REPO)
    oid, auth = hashlib.sha256(WEIGHTS).hexdigest(), {"Authorization": f"Bearer {hub_server.token}"}
    batch_url = f"{hub_server.endpoint}/{REPO}.git/info/lfs/objects/batch"
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(WEIGHTS)}]}
    answer = get_session().post(batch_url, json=batch, headers=auth).json()
    href = urlsplit(answer["objects"][0]["actions"]["upload"]["href"])
    connection = http.client.HTTPConnection(href.hostname, href.port)
    connection.putrequest("PUT", f"{href.path}?{href.query}")
    connection.putheader("Content-Length", str(len(WEIGHTS)))
    connection.endheaders()
    connection.send(WEIGHTS[: len(WEIGHTS) // 2])
    connection.close()  # the client dies mid-upload
    blobs = next(hub_server.root.rglob("blobs"))
    deadline = time.monotonic() + 10
    while list(blobs.glob(".upload.*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not list(blobs.glob(".upload.*")) and not (blobs / oid).exists()
    assert "actions" in get_session().post(batch_url, json=batch, headers=auth).json()["objects"][0]


def test_delete_operations_remove_files_and_folders(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    _publish(tmp_path, {"a.txt": b"a", "dir/b.txt": b"b", "dir/sub/c.safetensors": WEIGHTS})
    operations = [CommitOperationDelete("a.txt"), CommitOperationDelete("dir/sub/", is_folder=True)]
    api.create_commit(REPO, operations, commit_message="delete")
    assert api.list_repo_files(REPO) == [".gitattributes", "dir/b.txt"]
    with pytest.raises(EntryNotFoundError):
        api.create_commit(REPO, [CommitOperationDelete("a.txt")], commit_message="again")


def test_expanded_tree_paginates_and_reports_last_commits(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    first = _publish(tmp_path, {f"f{i:03d}.txt": b"%d" % i for i in range(60)})
    second = _publish(tmp_path, {"f000.txt": b"changed"})
    entries = {entry.path: entry for entry in api.list_repo_tree(REPO, expand=True)}
    assert len(entries) == 61  # 60 files + .gitattributes, over two pages of 50
    assert entries["f000.txt"].last_commit.oid == second
    assert entries["f059.txt"].last_commit.oid == first


def test_data_survives_a_server_restart(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    with serve(root) as server:
        api = HfApi(endpoint=server.endpoint, token=server.token)
        api.create_repo(REPO)
        sha = api.upload_file(path_or_fileobj=b"kept", path_in_repo="notes.txt", repo_id=REPO).oid
    with serve(root) as server:
        assert server.commits(REPO)[0] == sha
        assert HfApi(endpoint=server.endpoint).list_repo_files(REPO) == [".gitattributes", "notes.txt"]
