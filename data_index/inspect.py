"""What `zoo batch` and `zoo where-seen` show: a step's exact batch, and when a document was seen."""

from dataclasses import dataclass

import numpy as np

from ._errors import FingerprintMismatchError
from .step_index import StepIndex
from .store import DocSpan, TokenStore


@dataclass(frozen=True)
class Batch:
    """The batch of one step: sample ids, their tokens, the documents in each row, and each row's text."""

    step: int
    sample_ids: np.ndarray
    tokens: np.ndarray
    documents: list[list[DocSpan]]
    texts: list[str]


def batch(store: TokenStore, index: StepIndex, step: int) -> Batch:
    """The batch step `step` trained on, read from the materialized index."""
    _check_pair(store, index)
    ids = index.batch_ids(step)
    tokens = store.samples(ids)
    return Batch(
        step=step,
        sample_ids=ids,
        tokens=tokens,
        documents=[store.sample_documents(int(i)) for i in ids],
        texts=[store.decode(row) for row in tokens],
    )


def where_seen_text(store: TokenStore, index: StepIndex, snippet: str) -> dict[int, list[tuple[int, int]]]:
    """doc id -> every (step, row) it was seen at, for every document whose stored text contains `snippet`.

    Searches the decoded documents (byte-level BPE decodes to the original
    text), so a snippet matches whatever the tokenization around it. A
    matching document that no indexed step saw maps to an empty list.
    """
    _check_pair(store, index)
    return {d: index.where_seen(d) for d in range(store.n_docs) if snippet in store.document_text(d)}


def _check_pair(store: TokenStore, index: StepIndex) -> None:
    if index.store_fingerprint != store.fingerprint:
        raise FingerprintMismatchError(
            f"step index {index.path} was built on store {index.store_fingerprint}, but store {store.path} has "
            f"fingerprint {store.fingerprint}; open the store the index was built on, or rebuild the index"
        )


def format_batch(b: Batch, *, decode: bool) -> str:
    """One line per row (sample id, document spans), and with `decode` the row's text indented below it."""
    lines = [f"step {b.step}: {len(b.sample_ids)} samples of {b.tokens.shape[1]} tokens"]
    for row, (sid, spans) in enumerate(zip(b.sample_ids.tolist(), b.documents)):
        docs = " ".join(f"doc {s.doc}[{s.start}:{s.end}]" for s in spans)
        lines.append(f"  row {row:>4}  sample {sid:>8}  {docs}")
        if decode:
            lines.append("        " + repr(b.texts[row]))
    return "\n".join(lines)


def format_where_seen(hits: dict[int, list[tuple[int, int]]]) -> str:
    """One block per document: how often it was seen, then its (step, row) pairs."""
    if not hits:
        return "no document matched"
    lines = []
    for doc, seen in hits.items():
        lines.append(f"doc {doc}: seen {len(seen)} time(s)" + ("" if seen else " (never trained on)"))
        lines.extend(f"  step {step:>8}  row {row:>4}" for step, row in seen)
    return "\n".join(lines)
