"""The published data a replay reads, fetched lazily: only the index rows and token chunks it needs.

A zoo's dataset repo holds the token store (`data/`) and one step index per data seed
(`index/data{d}/`), both zarr v3 directories whose every file the repo's manifest lists.
They are opened with the readers local data uses (`TokenStore`, `StepIndex`), given a
fetch callback: each file is fetched and checked against the manifest before it is read,
so a lookup (a step's batch, a document's positions or tokens) fetches the few chunk files
that hold its rows and nothing else. A chunk file the manifest does not list holds only
the fill value (zarr never writes one), which the readers supply without a file.
"""

from __future__ import annotations

import threading

import numpy as np

from data_index import DataIndexError, DocSpan, StepIndex, TokenStore, step_sample_ids
from zoo.hub import Root
from zoo.hub.backends import Backend, backend_for
from zoo.hub.errors import IntegrityError
from zoo.hub.load import Snapshot, data_repo, fetch_all, snapshot
from zoo.replay.errors import ReplayError

_WHAT = {"data/tokens/": "token store", "data/doc_offsets/": "token store's document offsets",
         "data/": "token store", "index/": "step index (batch ids)"}


def describe(path: str) -> str:
    """What a published data file is, for an error a user can act on."""
    return next(what for prefix, what in _WHAT.items() if path.startswith(prefix))


class PublishedData:
    """The step index of one data seed and the token store of a published zoo, read chunk by chunk.

    `store` and `index` are the readers local data has; `batch_size=None` takes the index's.
    """

    def __init__(self, backend: Backend, snap: Snapshot, *, data_seed: int, batch_size: int | None,
                 fingerprint: str) -> None:
        self._backend, self._snap = backend, snap
        self._fetched: set[str] = set()
        self._lock = threading.Lock()
        repo = snap.repo.id
        if snap.manifest.dataset_fingerprint != fingerprint:
            raise ReplayError(f"dataset repo {repo} holds dataset {snap.manifest.dataset_fingerprint}, but the run "
                              f"was trained on {fingerprint}; the run and its data were published from different "
                              f"zoos: republish the zoo directory the run was trained in")
        where = f"index/data{data_seed}"
        try:
            self.store = TokenStore.open(snap.folder / "data", fetch=self._fetcher("data"))
            self.index = StepIndex.open(snap.folder / where, fetch=self._fetcher(where))
        except DataIndexError as e:
            raise ReplayError(f"dataset repo {repo}: {e}; republish the zoo's data with this version of zoo") from None
        if self.store.fingerprint != fingerprint or self.index.store_fingerprint != fingerprint:
            raise ReplayError(f"dataset repo {repo}: token store or step index {where} was built on other "
                              f"data than the run (fingerprint {fingerprint}); republish the zoo")
        batch_size = self.index.batch_size if batch_size is None else batch_size
        if (self.index.batch_size, self.index.data_seed) != (batch_size, data_seed):
            raise ReplayError(f"dataset repo {repo}: step index {where} is for batch size "
                              f"{self.index.batch_size} and data seed {self.index.data_seed}, the run used "
                              f"{batch_size} and {data_seed}; republish the zoo")
        self.n_steps = self.index.n_steps
        self.batch_size, self.data_seed = batch_size, data_seed

    @property
    def fetched(self) -> list[str]:
        """The chunk files fetched so far (what "lazily" saved is the rest of the repo)."""
        return sorted(p for p in self._fetched if "/c/" in p)

    def batch_ids(self, steps: list[int]) -> dict[int, np.ndarray]:
        """Sample ids of each of `steps`, read from the published index and checked against the order."""
        bad = [s for s in steps if not 1 <= s <= self.n_steps]
        if bad:
            raise ReplayError(f"steps {bad} are outside the published step index index/data{self.data_seed} "
                              f"(1..{self.n_steps})")
        out = {}
        for step in steps:
            ids = self.index.batch_ids(step)
            expected = step_sample_ids(step, batch_size=self.batch_size, n_samples=self.store.n_samples,
                                       data_seed=self.data_seed)
            if not np.array_equal(ids, expected):
                raise ReplayError(f"the published step index index/data{self.data_seed} (batch ids) is damaged: "
                                  f"its batch of step {step} is not the one the data order gives; republish the "
                                  f"zoo's data")
            out[step] = ids
        return out

    def samples(self, ids: np.ndarray) -> np.ndarray:
        """Tokens of samples `ids`: int64 [len(ids), n_ctx+1], the store's chunks fetched as needed."""
        return self.store.samples(ids)

    def documents(self, sample_id: int) -> list[DocSpan]:
        """The documents in sample `sample_id` with their token ranges (as `TokenStore.sample_documents`)."""
        return self.store.sample_documents(sample_id)

    def decode(self, tokens: np.ndarray) -> str:
        """Text of a token row; EOS shows as <|endoftext|>."""
        return self.store.decode(tokens)

    def _fetcher(self, prefix: str):
        """The fetch callback of the reader of folder `prefix`: listed files fetched and verified, once."""
        listed = self._snap.manifest.files

        def fetch(names: list[str]) -> None:
            paths = [f"{prefix}/{n}" for n in names]
            # A chunk file the manifest does not list was never written: it holds the fill value only.
            self._fetch_all([p for p in paths if p not in self._fetched and (p in listed or "/c/" not in p)])
        return fetch

    def _fetch_all(self, paths: list[str]) -> None:
        if not paths:
            return
        with self._lock:
            try:
                fetch_all(self._backend, self._snap, paths)
            except IntegrityError as e:
                raise _named(e) from None
            self._fetched.update(paths)


def published_data(zoo: str, *, org: str, data_seed: int, root: Root = None) -> PublishedData:
    """The published token store and step index of `data_seed` of zoo `zoo`, fetched as they are read."""
    backend = backend_for(root)
    snap = snapshot(backend, data_repo(org, zoo), None)
    return PublishedData(backend, snap, data_seed=data_seed, batch_size=None,
                         fingerprint=snap.manifest.dataset_fingerprint)


def _named(e: IntegrityError) -> IntegrityError:
    """The same error, saying first which published part is damaged."""
    return IntegrityError(f"the published {describe(e.path)} is damaged: {e}", repo_id=e.repo_id, path=e.path)
