"""Data order as a pure function of (data_seed, step): a keyed pseudorandom permutation.

Nothing about the order is ever saved: resuming, replaying or asking "which
samples were in step s" is arithmetic. The permutation is an 8-round Feistel
network over the mixed-radix domain Z_a x Z_b (a = 2^h ~ sqrt(n), b = ceil(n/a),
so a*b - n < a), with cycle walking for the few points of that domain >= n.
Because the domain overshoots n by less than sqrt(n), walks are rare, and any
number of positions costs the same fixed handful of numpy operations.
"""

import functools

import numpy as np

from ._errors import BadScheduleError, StepOutOfRangeError

_MASK64 = (1 << 64) - 1
_ROUNDS = 8
# step_sample_ids evaluates (and memoizes) ~this many positions at once: numpy's
# per-call overhead, not the arithmetic, dominates one batch, so consecutive
# steps (the trainer's pattern) share one evaluation.
_BLOCK_POSITIONS = 2048


def _splitmix64(state: int) -> tuple[int, int]:
    """One step of splitmix64: (next state, 64-bit output). The key schedule's only RNG."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def derive_key(data_seed: int, epoch: int) -> int:
    """The permutation key of one epoch: every epoch reshuffles with a fresh key."""
    return _splitmix64((data_seed & _MASK64) ^ _splitmix64(epoch & _MASK64)[1])[1]


@functools.lru_cache(maxsize=64)
def _schedule(n: int, key: int) -> tuple:
    """Domain shape and round constants for (n, key), as 0-d uint64 arrays (numpy's fastest operands)."""
    h = max(1, ((n - 1).bit_length() + 1) // 2)  # a = 2^h ~ sqrt(n)
    a = 1 << h
    b = -(-n // a)
    words = []
    state = key
    for _ in range(2 * _ROUNDS + 1):
        state, z = _splitmix64(state)
        words.append(z)
    xor_keys = [_u64(w) for w in words[:_ROUNDS]]
    multipliers = [_u64(w | 1) for w in words[_ROUNDS : 2 * _ROUNDS]]
    start = _u64(words[-1] & (a - 1))
    return _u64(h), _u64(64 - h), _u64(32), _u64(a - 1), _u64(b), _u64(n), start, xor_keys, multipliers


def _u64(v: int) -> np.ndarray:
    return np.array(v, dtype=np.uint64)


def _rounds(p: np.ndarray, sched: tuple) -> np.ndarray:
    """One pass of the Feistel network over Z_a x Z_b (p = y*a + x): a bijection of [0, a*b)."""
    h, top, s32, amask, b, _, start, xor_keys, mults = sched
    x = (p & amask) ^ start
    y = p >> h
    for i in range(0, _ROUNDS, 2):
        # x-round: x ^= hash(y), h bits; y-round: y = (y + hash(x) mod b) mod b. Each is invertible.
        x ^= ((y ^ xor_keys[i]) * mults[i]) >> top
        g = ((((x ^ xor_keys[i + 1]) * mults[i + 1]) >> s32) * b) >> s32  # in [0, b) without a division
        y = y + g
        y = np.minimum(y, y - b)  # y < 2b: subtracting b wraps around (huge) exactly when y < b
    return (y << h) | x


def _rounds_inverse(q: np.ndarray, sched: tuple) -> np.ndarray:
    """The inverse of `_rounds`: the same rounds undone in reverse order."""
    h, top, s32, amask, b, _, start, xor_keys, mults = sched
    x = q & amask
    y = q >> h
    for i in range(_ROUNDS - 2, -1, -2):
        g = ((((x ^ xor_keys[i + 1]) * mults[i + 1]) >> s32) * b) >> s32
        y = y + (b - g)  # (y - g) mod b, kept unsigned: y + b - g < 2b
        y = np.minimum(y, y - b)
        x ^= ((y ^ xor_keys[i]) * mults[i]) >> top
    return (y << h) | (x ^ start)


def _permute(p: np.ndarray, n: int, key: int, *, inverse: bool = False) -> np.ndarray:
    """permute() (or its inverse) without argument checks: p is uint64 inside [0, n)."""
    sched = _schedule(n, key)
    rounds = _rounds_inverse if inverse else _rounds
    n_arr = sched[5]
    out = rounds(p, sched)
    if out.size and out.max() >= n_arr:
        # Cycle walking: re-apply the permutation of the larger domain until inside [0, n).
        # It terminates: the cycle through a point of [0, n) comes back into [0, n). Walking
        # the inverse rounds retraces the same cycle backwards, so it inverts the walk too.
        walk = out >= n_arr
        while walk.any():
            out[walk] = rounds(out[walk], sched)
            walk = out >= n_arr
    return out.view(np.int64)


def permute(positions: np.ndarray, *, n: int, key: int) -> np.ndarray:
    """Map positions in [0, n) through the permutation of [0, n) named by `key` (int64 out).

    A bijection on [0, n) for every n >= 1, O(1) per element, vectorized. A
    permutation rather than a shuffled list: it needs no storage and no state,
    so any position of any epoch is computable on its own.
    """
    if n < 1:
        raise BadScheduleError(f"permute: n must be >= 1 (the number of samples), got {n}")
    p = np.asarray(positions)
    if p.size and (p.min() < 0 or p.max() >= n):
        raise BadScheduleError(f"permute: positions must lie in [0, {n}); got values in [{p.min()}, {p.max()}]")
    return _permute(p.astype(np.uint64), n, key & _MASK64)


def unpermute(values: np.ndarray, *, n: int, key: int) -> np.ndarray:
    """The inverse of permute(): the position in [0, n) that `key`'s permutation maps to each value."""
    if n < 1:
        raise BadScheduleError(f"unpermute: n must be >= 1 (the number of samples), got {n}")
    v = np.asarray(values)
    if v.size and (v.min() < 0 or v.max() >= n):
        raise BadScheduleError(f"unpermute: values must lie in [0, {n}); got values in [{v.min()}, {v.max()}]")
    return _permute(v.astype(np.uint64), n, key & _MASK64, inverse=True)


def sample_positions(sample_ids: np.ndarray, *, n_samples: int, data_seed: int,
                     n_positions: int) -> tuple[np.ndarray, np.ndarray]:
    """Every global position < n_positions at which the order uses each of `sample_ids`.

    Returns (index into sample_ids, position), int64, grouped by epoch: a sample is used
    once per epoch, at position epoch*n_samples + unpermute(sample). The inverse of
    positions_to_ids, so "when was this sample trained on" is arithmetic too.
    """
    ids = np.asarray(sample_ids, dtype=np.int64)
    which, where = [], []
    for epoch in range(-(-n_positions // n_samples)):
        positions = epoch * n_samples + _permute(ids.astype(np.uint64), n_samples,
                                                 derive_key(data_seed, epoch), inverse=True)
        kept = np.flatnonzero(positions < n_positions)
        which.append(kept)
        where.append(positions[kept])
    if not which:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(which), np.concatenate(where)


def step_sample_ids(step: int, *, batch_size: int, n_samples: int, data_seed: int) -> np.ndarray:
    """Sample ids of optimizer step `step` (>= 1), int64 [batch_size].

    Step s consumes global positions [(s-1)*B, s*B); position p lies in epoch
    p // n_samples and maps to permute(p % n_samples, key=derive_key(data_seed, epoch)).
    A batch may straddle epochs. Step 0 is the initial state and has no batch.
    """
    if step < 1:
        raise StepOutOfRangeError(
            f"step {step} has no batch: steps count optimizer updates from 1 (step 0 is the initial state)"
        )
    if batch_size < 1 or n_samples < 1:
        raise BadScheduleError(f"batch_size and n_samples must be >= 1, got {batch_size} and {n_samples}")
    steps_per_block = max(1, _BLOCK_POSITIONS // batch_size)
    block, row = divmod(step - 1, steps_per_block)
    return _block(block, steps_per_block, batch_size, n_samples, data_seed)[row].copy()


@functools.lru_cache(maxsize=4)
def _block(block: int, steps_per_block: int, batch_size: int, n_samples: int, data_seed: int) -> np.ndarray:
    """Sample ids of a block of consecutive steps, read-only [steps_per_block, batch_size]."""
    first = block * steps_per_block * batch_size
    positions = np.arange(first, first + steps_per_block * batch_size, dtype=np.int64)
    ids = positions_to_ids(positions, n_samples=n_samples, data_seed=data_seed).reshape(steps_per_block, batch_size)
    ids.flags.writeable = False
    return ids


def positions_to_ids(positions: np.ndarray, *, n_samples: int, data_seed: int) -> np.ndarray:
    """Sample ids at global positions >= 0 of any epochs (int64): the order for many steps at once."""
    positions = np.asarray(positions, dtype=np.int64)
    out = np.empty(positions.shape, dtype=np.int64)
    if not positions.size:
        return out
    epochs = positions // n_samples
    for epoch in range(int(epochs.min()), int(epochs.max()) + 1):
        sel = epochs == epoch
        if sel.any():
            local = (positions[sel] - epoch * n_samples).astype(np.uint64)
            out[sel] = _permute(local, n_samples, derive_key(data_seed, epoch))
    return out
