"""The suspend-resume dynamic program, three implementations of one recurrence (see
:func:`wattwise.schedule.solvers.suspend_resume` and docs/scheduling.md).

* ``slots``: forward in time, one whole-array step per time slot over (layer, progress). The original
  implementation, kept as the reference that the tests and the benchmark compare with.
* ``progress``: forward in work progress, on the diagonals ``u = t - k - n_s`` of the (slot, progress)
  plane (``u`` counts the slots a state has spent not working: before its first start, suspended or
  restarting; working keeps ``u``). A loop over the ``L`` work slots, each step over the ``U = T - n_s - L + 1``
  diagonals (the slack) instead of over all ``T`` slots; compiled with numba (``progress_numpy`` is the same
  loop in whole-array numpy steps, used when numba is missing).

Every implementation takes per-window arrays of shape ``(B, T)`` and the startup cost of every start slot
``sc`` (J·g/kWh, ``inf`` where the startup would touch a blocked slot), and returns, per window, ``None``
(infeasible) or ``(blocks, cost)`` with the cost in J·g/kWh. All three add the same terms in the same order
along every path and break ties by the same rules (earliest finish, then fewest starts; continuing beats
restarting at equal cost; a stop at the earliest time of least cost), so they return the same plans, bit for
bit (tested on random instances full of ties).

Why ``progress`` may ignore stops right after a restart: a restart costs ``≥ 0``, so a plan that restarts and
suspends again at the same progress is never better than the plan that skips the first of the two restarts
(which also has one start fewer), hence only *worked* states need to be stop points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Block = tuple[int, int, int]
Result = tuple[list[Block], float] | None

def _no_jit(*args: object, **kwargs: object) -> Callable[..., object]:
    return lambda f: f


_njit: Callable[..., Any]
try:  # pragma: no cover - exercised whenever numba is installed (a dependency)
    from numba import njit as _njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    HAVE_NUMBA = False
    _njit = _no_jit


# -- progress (diagonal) form ------------------------------------------------------------------------------
@_njit(cache=True, nogil=True)
def _flat_kernel(c, sc, w, ok, blocked, ns, restarted, improved, last):  # type: ignore[no-untyped-def]  # pragma: no cover
    """No resume limit (one layer). ``restarted[k, b, u]``: work slot ``k`` of diagonal ``u`` begins after a
    (re)start; ``improved[k, b, u]``: the running minimum over ``u`` of the cost of having ``k`` slots done
    improved strictly at ``u`` (both zero on entry). ``last[b, u]``: the cost of finishing on diagonal ``u``."""
    B, T = c.shape
    L = w.size
    U = T - ns - L + 1
    inf = np.inf
    H = np.empty(U)
    P = np.empty(U)
    for b in range(B):
        cb = c[b]
        sb = sc[b]
        bb = blocked[b]
        for u in range(U):
            H[u] = sb[u]
            restarted[0, b, u] = True
        for k in range(L):
            wk = w[k]
            base = k + ns
            kk = k + 1
            if kk == L or not ok[kk]:
                for u in range(U):
                    H[u] = inf if bb[base + u] else H[u] + wk * cb[base + u]
                continue
            running = inf
            rb = restarted[kk, b]
            ib = improved[kk, b]
            for u in range(U):
                v = inf if bb[base + u] else H[u] + wk * cb[base + u]
                if v < running:
                    ib[u] = True
                    running = v
                P[u] = running
                r = P[u - ns] + sb[kk + u] if u >= ns else inf
                if r < v:
                    rb[u] = True
                    H[u] = r
                else:
                    H[u] = v
        for u in range(U):
            last[b, u] = H[u]


@_njit(cache=True, nogil=True)
def _layered_kernel(c, sc, w, ok, blocked, G, ns, restarted, improved, last):  # type: ignore[no-untyped-def]  # pragma: no cover
    """With a resume limit: layer ``g`` = starts made (0 … G-1); a restart goes from layer ``g-1`` to ``g``."""
    B, T = c.shape
    L = w.size
    U = T - ns - L + 1
    inf = np.inf
    H = np.empty((G, U))
    P = np.empty((G, U))
    running = np.empty(G)
    a = np.empty(G)
    for b in range(B):
        for g in range(G):
            for u in range(U):
                H[g, u] = sc[b, u] if g == 1 else inf
        for u in range(U):
            restarted[0, b, 1, u] = True
        for k in range(L):
            wk = w[k]
            base = k + ns
            kk = k + 1
            if kk == L or not ok[kk]:
                for u in range(U):
                    free = not blocked[b, base + u]
                    x = c[b, base + u]
                    for g in range(G):
                        H[g, u] = H[g, u] + wk * x if free else inf
                continue
            for g in range(G):
                running[g] = inf
            for u in range(U):
                free = not blocked[b, base + u]
                x = c[b, base + u]
                for g in range(G):
                    v = H[g, u] + wk * x if free else inf
                    a[g] = v
                    if v < running[g]:
                        improved[kk, b, g, u] = True
                        running[g] = v
                    P[g, u] = running[g]
                s = sc[b, kk + u]
                for g in range(G):
                    r = P[g - 1, u - ns] + s if (g >= 1 and u >= ns) else inf
                    if r < a[g]:
                        restarted[kk, b, g, u] = True
                        H[g, u] = r
                    else:
                        H[g, u] = a[g]
        for g in range(G):
            for u in range(U):
                last[b, g, u] = H[g, u]


def _progress_numpy(c: np.ndarray, sc: np.ndarray, w: np.ndarray, ok: np.ndarray, blocked: np.ndarray,
                    G: int, layered: bool, ns: int, restarted: np.ndarray, improved: np.ndarray,
                    last: np.ndarray) -> None:
    """The kernels' loop in whole-array numpy steps over (window, layer, diagonal)."""
    B, T = c.shape
    L = w.size
    U = T - ns - L + 1
    inf = np.inf
    first = 1 if layered else 0
    H = np.full((B, G, U), inf)
    H[:, first, :] = sc[:, :U]
    restarted[0, :, first, :] = True
    A = np.empty((B, G, U))
    P = np.empty((B, G, U))
    R = np.empty((B, G, U))
    mask = blocked if blocked.any() else None
    for k in range(L):
        np.multiply(c[:, None, k + ns:k + ns + U], w[k], out=A)
        np.add(A, H, out=A)
        if mask is not None:
            np.copyto(A, inf, where=mask[:, None, k + ns:k + ns + U])
        kk = k + 1
        if kk == L:
            break
        if not ok[kk]:
            H, A = A, H
            continue
        np.minimum.accumulate(A, axis=2, out=P)
        imp = improved[kk]
        np.less(A[:, :, :1], inf, out=imp[:, :, :1])
        np.less(A[:, :, 1:], P[:, :, :-1], out=imp[:, :, 1:])
        R.fill(inf)
        if ns < U:
            if layered:
                np.add(P[:, :-1, :U - ns], sc[:, None, kk + ns:kk + U], out=R[:, 1:, ns:])
            else:
                np.add(P[:, :, :U - ns], sc[:, None, kk + ns:kk + U], out=R[:, :, ns:])
        np.less(R, A, out=restarted[kk])
        np.minimum(A, R, out=H)
    last[...] = A


Tables = tuple[np.ndarray, np.ndarray, np.ndarray]


def progress(c: np.ndarray, sc: np.ndarray, w: np.ndarray, ok: np.ndarray | None, G: int, layered: bool,
             ns: int, blocked: np.ndarray | None, compiled: bool = True) -> list[Result]:
    """The program by work progress (module doc). ``c``: ``(B, T)``; ``sc``: ``(B, T - ns + 1)``."""
    tables = progress_tables(c, sc, w, ok, G, layered, ns, blocked, compiled)
    return backtrack(tables, ns, layered, tables[2].shape[2])


def progress_tables(c: np.ndarray, sc: np.ndarray, w: np.ndarray, ok: np.ndarray | None, G: int,
                    layered: bool, ns: int, blocked: np.ndarray | None, compiled: bool = True) -> Tables:
    """The decisions ``restarted``, ``improved`` (``(L, B, G, U)``) and the finish costs ``last``
    (``(B, G, U)``). Every entry at diagonal ``u`` depends only on the window's first ``u + L + n_s`` slots,
    so the tables of a window are, up to ``U'``, those of its first ``T' = U' + L + n_s - 1`` slots: one
    program answers every shorter deadline of the same arrival (see :func:`backtrack`)."""
    B, T = c.shape
    L = w.size
    U = T - ns - L + 1
    ok_arr = np.ones(L, dtype=bool) if ok is None else np.ascontiguousarray(ok, dtype=bool)
    blocked_arr = (np.zeros((B, T), dtype=bool) if blocked is None
                   else np.ascontiguousarray(blocked, dtype=bool))
    last = np.empty((B, G, U))
    c = np.ascontiguousarray(c, dtype=float)
    sc = np.ascontiguousarray(sc, dtype=float)
    w = np.ascontiguousarray(w, dtype=float)
    restarted = np.zeros((L, B, G, U), dtype=bool)
    improved = np.zeros((L, B, G, U), dtype=bool)
    if compiled and HAVE_NUMBA and not layered:
        _flat_kernel(c, sc, w, ok_arr, blocked_arr, ns, restarted[:, :, 0], improved[:, :, 0], last[:, 0])
    elif compiled and HAVE_NUMBA:
        _layered_kernel(c, sc, w, ok_arr, blocked_arr, G, ns, restarted, improved, last)
    else:
        _progress_numpy(c, sc, w, ok_arr, blocked_arr, G, layered, ns, restarted, improved, last)
    return restarted, improved, last


def backtrack(tables: Tables, ns: int, layered: bool, U: int) -> list[Result]:
    """The plans of the windows whose deadlines leave ``U`` diagonals (``U ≤`` the tables' own)."""
    restarted, improved, last_all = tables
    L = restarted.shape[0]
    last = last_all[:, :, :U]
    results: list[Result] = []
    finish = last.min(axis=1)  # (B, U): the best layer on each diagonal
    for b in range(last.shape[0]):
        u = int(np.argmin(finish[b]))  # the earliest finish of least cost
        best = float(finish[b, u])
        if not np.isfinite(best):
            results.append(None)
            continue
        g = int(np.argmin(last[b, :, u]))  # the fewest starts
        blocks: list[Block] = []
        end_k = L
        while True:
            # back along the diagonal to where this run's startup ended
            k0 = int(np.flatnonzero(restarted[:end_k, b, g, u])[-1])
            blocks.append((u + k0, k0, end_k))
            if k0 == 0:
                break
            if layered:
                g -= 1
            # the stop before that restart: the earliest least cost up to u - ns
            u = int(np.flatnonzero(improved[k0, b, g, :u - ns + 1])[-1])
            end_k = k0
        blocks.reverse()
        results.append((blocks, best))
    return results


# -- slots (reference) -------------------------------------------------------------------------------------
def slots(c: np.ndarray, sc: np.ndarray, w_j: np.ndarray, ok: np.ndarray | None, G: int, layered: bool,
          ns: int, blocked: np.ndarray | None) -> list[Result]:
    """The program forward in time (module doc): ``from_start[t, b, g, k]`` and ``stopped[t, b, g, k]``
    record the decisions, one byte per state and slot."""
    B, T = c.shape
    L = w_j.size
    inf = np.inf
    H = np.full((B, G, L + 1), inf)
    S = np.full((B, G, L + 1), inf)
    S[:, 0, 0] = 0.0
    H_next = np.full((B, G, L + 1), inf)
    from_start = np.zeros((T + 1, B, G, L + 1), dtype=bool)
    stopped = np.zeros((T + 1, B, G, L), dtype=bool)
    ring = np.full((ns + 1, B, G, L + 1), inf) if ns else None
    ring_set = [False] * (ns + 1)
    stop_penalty = None if ok is None else np.where(ok, 0.0, inf)
    cand = np.empty((B, G, L)) if ok is not None else None
    work = np.empty((B, L))
    best = np.full(B, inf)
    best_t = np.full(B, -1)
    best_g = np.zeros(B, dtype=np.int64)
    rows = np.arange(B)
    blocked_any = blocked is not None and bool(blocked.any())
    for t in range(T + 1):
        if ring is not None and t >= ns and ring_set[t % (ns + 1)]:
            arriving = ring[t % (ns + 1)]
            np.less(arriving, H, out=from_start[t])
            np.minimum(H, arriving, out=H)
            ring_set[t % (ns + 1)] = False
        if G == 1:
            done = H[:, 0, L]
            better = done < best
            if better.any():
                best[better] = done[better]
                best_t[better] = t
        else:
            layer = H[:, :, L].argmin(axis=1)
            done = H[rows, layer, L]
            better = done < best
            if better.any():
                best[better] = done[better]
                best_t[better] = t
                best_g[better] = layer[better]
        if t == T:
            break
        # a hot job may stop, keeping its progress
        if stop_penalty is not None:
            assert cand is not None  # made together with stop_penalty
            np.add(H[:, :, :L], stop_penalty, out=cand)
            source = cand
        else:
            source = H[:, :, :L]
        np.less(source, S[:, :, :L], out=stopped[t])
        np.minimum(S[:, :, :L], source, out=S[:, :, :L])
        # a suspended job may (re)start
        if ns == 0:
            if layered:
                np.less(S[:, :-1], H[:, 1:], out=from_start[t][:, 1:])
                np.minimum(H[:, 1:], S[:, :-1], out=H[:, 1:])
            else:
                np.less(S, H, out=from_start[t])
                np.minimum(H, S, out=H)
        elif t + ns <= T:
            assert ring is not None  # made whenever ns > 0
            r = (t + ns) % (ns + 1)
            dest = ring[r]
            cost = sc[:, t][:, None, None]
            if layered:
                np.add(S[:, :-1], cost, out=dest[:, 1:])
                dest[:, 0] = inf
            else:
                np.add(S, cost, out=dest)
            ring_set[r] = True
        # a hot job works slot t
        np.multiply(w_j, c[:, t:t + 1], out=work)
        np.add(H[:, :, :L], work[:, None, :], out=H_next[:, :, 1:])
        H_next[:, :, 0] = inf
        if blocked_any:
            assert blocked is not None
            H_next[blocked[:, t]] = inf
        H, H_next = H_next, H
    results: list[Result] = []
    for b in range(B):
        if not np.isfinite(best[b]):
            results.append(None)
            continue
        blocks = _backtrack(from_start[:, b], stopped[:, b], int(best_t[b]), int(best_g[b]), L, ns, layered)
        results.append((blocks, float(best[b])))
    return results


def _backtrack(from_start: np.ndarray, stopped: np.ndarray, t: int, g: int, L: int, ns: int,
               layered: bool) -> list[Block]:
    """Walk the decisions back from the finish (hot, ``L`` work slots done at ``t``), a run at a time."""
    blocks: list[Block] = []
    k = end_k = L
    while True:
        # hot: back along the diagonal (one work slot per slot) to where the startup ended
        back = np.arange(min(t, k) + 1)
        i = int(np.argmax(from_start[t - back, g, k - back]))
        if not from_start[t - i, g, k - i]:
            raise RuntimeError("suspend-resume backtrack lost its way")
        t, k = t - i - ns, k - i
        blocks.append((t, k, end_k))
        if layered:
            g -= 1
        # suspended: back in time to where the job stopped, or to the beginning
        hits = np.flatnonzero(stopped[t::-1, g, k]) if k < L else np.zeros(0, dtype=np.int64)
        if hits.size == 0:
            break
        t -= int(hits[0])
        end_k = k
    blocks.reverse()
    return blocks
