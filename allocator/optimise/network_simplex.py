"""An exact primal network simplex for integral min-cost flow, compiled with numba.

The paid tier is a transportation-like network (demands -> supply nodes -> one sink) with far more
arcs than nodes. A primal network simplex (the thread / parent / subtree-size tree of Grigoriadis and of
LEMON's NetworkSimplex, the reference implementation) keeps a spanning tree of basic arcs, enters an arc
of negative reduced cost, pushes flow round the cycle it closes and re-hangs the subtree cut off by the
leaving arc. The tree is kept *strongly feasible* (the leaving arc is the last blocking arc of the cycle
seen from its apex), which rules out cycling, so the loop ends, and it ends only when no arc it prices has
a negative reduced cost: the flow is then optimal and the potentials an optimal dual, in exact integers.

It starts from a basis around a feasible flow (`Simplex.from_flow`: the warm re-solve's repair,
optimise/paid_warm.py), which then needs only the pivots that fix what is wrong with it, and prices from a
candidate list (`Simplex.run`). No Python objects in the compiled loops; the arrays are int32 ids and int64
capacities, costs, flows and potentials. (A start from an artificial basis and LEMON's block-search pricing
were built, measured and dropped: docs/model.md "Warm re-solves".)
"""

from __future__ import annotations

import numba
import numpy as np

from allocator.domain import I64

UPPER, TREE, LOWER = -1, 0, 1  # an arc's state; for a non-tree arc, +-1 is also the sign of its pricing
UP, DOWN = 1, -1  # a tree node's arc to its parent: from the node (UP) or into it (DOWN)
INF = 2**62
CANDIDATES = 1000  # the candidate list (measured best of 200-3000 on the 1M- and 5M-arc days)


@numba.njit(cache=True, nogil=True, inline="always")
def _priced(e, state, cost, pi, source, target):  # fmt: skip
    """Arc e's reduced cost signed by its state: negative exactly when moving e off its bound pays."""
    return state[e] * (cost[e] + pi[source[e]] - pi[target[e]])


@numba.njit(cache=True, nogil=True)
def _pivot_loop(source, target, cap, cost, flow, state, parent, pred, pred_dir, thread, rev_thread,
                succ_num, last_succ, pi, search, listed, minor_limit, max_pivots, cand, io):  # fmt: skip
    # io: where pricing stopped (next position in `search`, listed candidates, minor iterations), kept
    # between calls so that a run in chunks prices as one run does
    n_search = search.size
    dirty = np.empty(parent.size, dtype=np.int32)
    next_arc = io[0] % n_search
    n_cand = io[1]
    minor = io[2]
    pivots = 0
    while True:
        best = 0
        in_arc = -1
        if n_cand > 0 and minor < minor_limit:
            # ---- minor iteration: the best of the listed arcs still negative
            kept = 0
            for i in range(n_cand):
                e = cand[i]
                c = _priced(e, state, cost, pi, source, target)
                if c < 0:
                    cand[kept] = e
                    kept += 1
                    if c < best:
                        best = c
                        in_arc = e
            n_cand = kept
            minor += 1
        if best >= 0:
            # ---- major iteration: list up to `listed` negative arcs from where the last scan stopped,
            # at most one pass over the arcs
            n_cand = 0
            minor = 0
            k = next_arc
            for _ in range(n_search):
                e = search[k]
                c = _priced(e, state, cost, pi, source, target)
                k += 1
                if k == n_search:
                    k = 0
                if c < 0:
                    cand[n_cand] = e
                    n_cand += 1
                    if c < best:
                        best = c
                        in_arc = e
                    if n_cand == listed:
                        break
            next_arc = k
        if best >= 0:
            break
        pivots += 1
        if pivots > max_pivots:
            io[0] = next_arc
            io[1] = n_cand
            io[2] = minor
            return -1
        # ---- apex (join) of the cycle
        u = source[in_arc]
        v = target[in_arc]
        while u != v:
            if succ_num[u] < succ_num[v]:
                u = parent[u]
            else:
                v = parent[v]
        join = u
        # ---- leaving arc: the last blocking arc in the cycle's direction (strongly feasible tree)
        if state[in_arc] == LOWER:
            first = source[in_arc]
            second = target[in_arc]
        else:
            first = target[in_arc]
            second = source[in_arc]
        delta = cap[in_arc]
        result = 0
        u_out = -1
        u = first
        while u != join:
            a = pred[u]
            d = flow[a] if pred_dir[u] == UP else cap[a] - flow[a]
            if d < delta:
                delta = d
                u_out = u
                result = 1
            u = parent[u]
        u = second
        while u != join:
            a = pred[u]
            d = cap[a] - flow[a] if pred_dir[u] == UP else flow[a]
            if d <= delta:
                delta = d
                u_out = u
                result = 2
            u = parent[u]
        if result == 1:
            u_in = first
            v_in = second
        else:
            u_in = second
            v_in = first
        # ---- push delta round the cycle
        if delta > 0:
            val = state[in_arc] * delta
            flow[in_arc] += val
            u = source[in_arc]
            while u != join:
                flow[pred[u]] -= pred_dir[u] * val
                u = parent[u]
            u = target[in_arc]
            while u != join:
                flow[pred[u]] += pred_dir[u] * val
                u = parent[u]
        if result == 0:  # the entering arc blocks itself: it only changes bound
            state[in_arc] = -state[in_arc]
            continue
        state[in_arc] = TREE
        out_arc = pred[u_out]
        state[out_arc] = LOWER if flow[out_arc] == 0 else UPPER
        # ---- re-hang the subtree cut off at u_out from u_in under v_in
        old_rev_thread = rev_thread[u_out]
        old_succ_num = succ_num[u_out]
        old_last_succ = last_succ[u_out]
        v_out = parent[u_out]
        if u_in == u_out:
            parent[u_in] = v_in
            pred[u_in] = in_arc
            pred_dir[u_in] = UP if u_in == source[in_arc] else DOWN
            if thread[v_in] != u_out:
                after = thread[old_last_succ]
                thread[old_rev_thread] = after
                rev_thread[after] = old_rev_thread
                after = thread[v_in]
                thread[v_in] = u_out
                rev_thread[u_out] = v_in
                thread[old_last_succ] = after
                rev_thread[after] = old_last_succ
        else:
            thread_continue = thread[old_last_succ] if old_rev_thread == v_in else thread[v_in]
            stem = u_in
            par_stem = v_in
            last = last_succ[u_in]
            after = thread[last]
            thread[v_in] = u_in
            n_dirty = 0
            dirty[n_dirty] = v_in
            n_dirty += 1
            while stem != u_out:
                next_stem = parent[stem]
                thread[last] = next_stem
                dirty[n_dirty] = last
                n_dirty += 1
                before = rev_thread[stem]
                thread[before] = after
                rev_thread[after] = before
                parent[stem] = par_stem
                par_stem = stem
                stem = next_stem
                last = rev_thread[par_stem] if last_succ[stem] == last_succ[par_stem] else last_succ[stem]
                after = thread[last]
            parent[u_out] = par_stem
            thread[last] = thread_continue
            rev_thread[thread_continue] = last
            last_succ[u_out] = last
            if old_rev_thread != v_in:
                thread[old_rev_thread] = after
                rev_thread[after] = old_rev_thread
            for i in range(n_dirty):
                w = dirty[i]
                rev_thread[thread[w]] = w
            tmp_sc = 0
            tmp_ls = last_succ[u_out]
            u = u_out
            p = parent[u]
            while u != u_in:
                pred[u] = pred[p]
                pred_dir[u] = -pred_dir[p]
                tmp_sc += succ_num[u] - succ_num[p]
                succ_num[u] = tmp_sc
                last_succ[p] = tmp_ls
                u = p
                p = parent[u]
            pred[u_in] = in_arc
            pred_dir[u_in] = UP if u_in == source[in_arc] else DOWN
            succ_num[u_in] = old_succ_num
        up_limit_out = join if last_succ[join] == v_in else -1
        last_succ_out = last_succ[u_out]
        u = v_in
        while u != -1 and last_succ[u] == v_in:
            last_succ[u] = last_succ_out
            u = parent[u]
        if join != old_rev_thread and v_in != old_rev_thread:
            u = v_out
            while u != up_limit_out and last_succ[u] == old_last_succ:
                last_succ[u] = old_rev_thread
                u = parent[u]
        elif last_succ_out != old_last_succ:
            u = v_out
            while u != up_limit_out and last_succ[u] == old_last_succ:
                last_succ[u] = last_succ_out
                u = parent[u]
        u = v_in
        while u != join:
            succ_num[u] += old_succ_num
            u = parent[u]
        u = v_out
        while u != join:
            succ_num[u] -= old_succ_num
            u = parent[u]
        # ---- potentials of the moved subtree
        sigma = pi[v_in] - pi[u_in] - pred_dir[u_in] * cost[in_arc]
        end = thread[last_succ[u_in]]
        u = u_in
        while u != end:
            pi[u] += sigma
            u = thread[u]
    io[0] = next_arc
    io[1] = 0
    io[2] = 0
    return pivots


@numba.njit(cache=True, nogil=True)
def _find(uf, x):
    r = x
    while uf[r] != r:
        r = uf[r]
    while uf[x] != r:
        nxt = uf[x]
        uf[x] = r
        x = nxt
    return r


@numba.njit(cache=True, nogil=True)
def _adjacency(n, arcs, source, target):  # fmt: skip
    """The arcs at each of the n vertices, both ends: vertex u's are adj[start[u]:start[u + 1]]."""
    start = np.zeros(n + 1, np.int64)
    for i in range(arcs.size):
        start[source[arcs[i]] + 1] += 1
        start[target[arcs[i]] + 1] += 1
    for u in range(n):
        start[u + 1] += start[u]
    fill = start[:-1].copy()
    adj = np.empty(2 * arcs.size, np.int64)
    for i in range(arcs.size):
        a = arcs[i]
        adj[fill[source[a]]] = a
        fill[source[a]] += 1
        adj[fill[target[a]]] = a
        fill[target[a]] += 1
    return start, adj


@numba.njit(cache=True, nogil=True)
def _cancel_interior_cycles(n, source, target, cap, cost, flow, candidates, max_passes):  # fmt: skip
    """Push flow round each cycle of arcs strictly inside their bounds (taken from `candidates`) until
    none is left; each push sends an arc of the cycle to a bound, in the direction that costs nothing more
    (a cycle of an optimal flow's inner arcs costs 0 either way). Returns the cycles cancelled, or -1 when
    they were not all cancelled within max_passes passes (each pass costs O(n + len(candidates)) and its
    cycles' paths, and cancels at least one cycle, its first, whose path nothing has moved yet).

    In passes: the inner arcs are taken in order into a forest (rooted by a breadth-first search, so that
    paths are short), those that would close a cycle set aside; each set-aside arc's cycle is its forest
    path (up to the two ends' common ancestor) and is cancelled; a cycle whose path an earlier push of the
    same pass sent to a bound waits for the next pass."""
    k = candidates.size
    forest = np.empty(k, np.int64)
    closing = np.empty(k, np.int64)
    up = np.empty(n, np.int64)  # the forest arc to a node's parent (-1: a root)
    depth = np.empty(n, np.int64)
    queue = np.empty(n, np.int64)
    path = np.empty(n, np.int64)  # a cycle's forest arcs (a path has fewer than n)
    sign = np.empty(n, np.int64)
    cancelled = 0
    passes = 0
    while True:
        uf = np.arange(n)
        nf = 0
        nc = 0
        for i in range(k):
            a = candidates[i]
            if flow[a] <= 0 or flow[a] >= cap[a]:
                continue
            ru = _find(uf, source[a])
            rv = _find(uf, target[a])
            if ru == rv:
                closing[nc] = a
                nc += 1
            else:
                uf[ru] = rv
                forest[nf] = a
                nf += 1
        if nc == 0:
            return cancelled
        passes += 1
        if passes > max_passes:
            return -1
        start, adj = _adjacency(n, forest[:nf], source, target)
        depth[:] = -1
        for r in range(n):  # root each tree of the forest where a search first reaches it
            if depth[r] >= 0:
                continue
            depth[r] = 0
            up[r] = -1
            head = 0
            tail = 1
            queue[0] = r
            while head < tail:
                x = queue[head]
                head += 1
                for j in range(start[x], start[x + 1]):
                    a = adj[j]
                    y = target[a] if source[a] == x else source[a]
                    if depth[y] < 0:
                        depth[y] = depth[x] + 1
                        up[y] = a
                        queue[tail] = y
                        tail += 1
        for c in range(nc):
            arc = closing[c]
            if flow[arc] <= 0 or flow[arc] >= cap[arc]:
                continue
            # the cycle: the arc forward (u0 -> v0), then v0 up to the two ends' common ancestor and down
            # to u0. x climbs from v0 (the cycle goes up there), y from u0 (the cycle comes down there);
            # the path's arcs are kept with +1 where the cycle runs along them, -1 against.
            fwd_room = cap[arc] - flow[arc]
            bwd_room = flow[arc]
            cyc_cost = cost[arc]
            broken = False
            steps = 0
            x = target[arc]
            y = source[arc]
            while x != y:
                if depth[x] >= depth[y]:
                    a = up[x]
                    along = source[a] == x
                    x = target[a] if along else source[a]
                else:
                    a = up[y]
                    along = source[a] != y
                    y = source[a] if along else target[a]
                if flow[a] <= 0 or flow[a] >= cap[a]:
                    broken = True
                    break
                path[steps] = a
                sign[steps] = 1 if along else -1
                steps += 1
                if along:
                    fwd_room = min(fwd_room, cap[a] - flow[a])
                    bwd_room = min(bwd_room, flow[a])
                else:
                    fwd_room = min(fwd_room, flow[a])
                    bwd_room = min(bwd_room, cap[a] - flow[a])
                cyc_cost += sign[steps - 1] * cost[a]
            if broken:
                continue  # an earlier push of this pass sent an arc of the path to a bound: next pass
            step = fwd_room if cyc_cost <= 0 else -bwd_room
            flow[arc] += step
            for i in range(steps):
                flow[path[i]] += sign[i] * step
            cancelled += 1


@numba.njit(cache=True, nogil=True)
def _hang_tree(root, tree, source, target, cost, parent, pred, pred_dir, thread, rev_thread, succ_num,
               last_succ, pi):  # fmt: skip
    """Root the spanning tree (arcs `tree`, one per non-root node) at `root`: parents, preorder thread,
    subtree sizes and last successors, and the potentials that give tree arcs reduced cost 0 (root: 0).
    Returns False when the arcs do not span the nodes as a tree."""
    n1 = parent.size
    start, adj = _adjacency(n1, tree, source, target)
    order = np.empty(n1, np.int64)
    pos = np.full(n1, -1, np.int64)
    stack = np.empty(n1, np.int64)
    stack[0] = root
    top = 1
    parent[root] = -1
    pred[root] = -1
    pred_dir[root] = 0
    pi[root] = 0
    queued = np.zeros(n1, np.bool_)
    queued[root] = True
    seen = 0
    while top > 0:
        top -= 1
        u = stack[top]
        pos[u] = seen
        order[seen] = u
        seen += 1
        for j in range(start[u], start[u + 1]):
            a = adj[j]
            if a == pred[u]:
                continue
            w = target[a] if source[a] == u else source[a]
            if queued[w]:
                return False  # reached twice: a cycle
            queued[w] = True
            parent[w] = u
            pred[w] = a
            if source[a] == w:
                pred_dir[w] = UP
                pi[w] = pi[u] - cost[a]
            else:
                pred_dir[w] = DOWN
                pi[w] = pi[u] + cost[a]
            stack[top] = w
            top += 1
    if seen != n1:
        return False
    for i in range(n1):
        succ_num[i] = 1
    for i in range(n1 - 1, 0, -1):
        succ_num[parent[order[i]]] += succ_num[order[i]]
    for i in range(n1):
        nxt = order[i + 1] if i + 1 < n1 else root
        thread[order[i]] = nxt
        rev_thread[nxt] = order[i]
    for u in range(n1):
        last_succ[u] = order[pos[u] + succ_num[u] - 1]
    return True


@numba.njit(cache=True, nogil=True)
def _spanning(n, source, target, cap, flow, inner, connectors):  # fmt: skip
    """Arcs of a strongly feasible spanning tree over the n nodes and the root n (every node can send a
    positive flow to the root along its tree path): every arc of `inner` (a forest of arcs strictly inside
    their bounds, which can carry flow either way), then `connectors` in order where they join two trees
    without breaking that, then the artificial arc (index m + rep, from rep to the root, empty, of
    unbounded capacity) of one node of each tree left.

    A connector at a bound carries flow towards the root one way only: an empty one must point to the
    root (its tail hangs below its head), a full one away from it (its head hangs below). A tree joined
    so hangs from a node of its *top* part — the inner tree that is not yet below anything — so that no
    connector joined before changes direction; the joined tree's top part is the other side's. The
    union-find root of a joined tree is always the union-find root of its top part (a union links the
    hanging tree's root below the other's), so "in the top part" is part[u] == find(u)."""
    m = source.size - n
    uf = np.arange(n)
    tree = np.empty(n, np.int64)
    t = 0
    for i in range(inner.size):
        a = inner[i]
        uf[_find(uf, source[a])] = _find(uf, target[a])
        tree[t] = a
        t += 1
    part = np.empty(n, np.int64)  # the inner tree of each node (its union-find root before any connector)
    for u in range(n):
        part[u] = _find(uf, u)
    for i in range(connectors.size):
        if t == n - 1:
            break
        a = connectors[i]
        if cap[a] <= 0:
            continue  # can carry nothing either way: never strongly feasible in the tree
        if flow[a] == 0:
            child, other = source[a], target[a]
        elif flow[a] == cap[a]:
            child, other = target[a], source[a]
        else:
            continue  # (inner arcs are all in the forest already)
        rc = _find(uf, child)
        ro = _find(uf, other)
        if rc == ro or part[child] != rc:  # (the child must be in its tree's top part)
            continue
        uf[rc] = ro  # the child's tree hangs below: the joined tree keeps the other side's top part
        tree[t] = a
        t += 1
    done = np.zeros(n, np.bool_)
    for u in range(n):
        r = _find(uf, u)
        if not done[r] and part[u] == r:
            done[r] = True
            tree[t] = m + u
            t += 1
    return tree[:t]


@numba.njit(cache=True, nogil=True)
def _violations(source, target, cost, state, pi, m):  # fmt: skip
    out = np.empty(m, np.int64)
    n_out = 0
    for e in range(m):
        if _priced(e, state, cost, pi, source, target) < 0:
            out[n_out] = e
            n_out += 1
    return out[:n_out].copy()


class Simplex:
    """A network simplex over a fixed network whose basis survives between runs: `run(search)` pivots
    until no arc of `search` has a negative reduced cost; a later run with more arcs starts from there.
    Built by `from_flow` only (the service always has a feasible flow to start from).

    Arcs: the m real arcs, then one artificial arc per node (node -> root); nodes: the n nodes, then the
    root. The tree is LEMON's: parent, pred (the arc to the parent) and pred_dir, the preorder thread
    and rev_thread, subtree sizes (succ_num) and last successors; pi are the potentials."""

    m: int
    n: int
    source: np.ndarray
    target: np.ndarray
    cap: np.ndarray
    cost: np.ndarray
    flow: np.ndarray
    state: np.ndarray
    parent: np.ndarray
    pred: np.ndarray
    pred_dir: np.ndarray
    thread: np.ndarray
    rev_thread: np.ndarray
    succ_num: np.ndarray
    last_succ: np.ndarray
    pi: np.ndarray
    pivots: int
    _pricing: tuple[np.ndarray, np.ndarray]  # (candidate list, where pricing stopped)

    @classmethod
    def from_flow(
        cls,
        n_nodes: int,
        tails: np.ndarray,
        heads: np.ndarray,
        caps: np.ndarray,
        costs: np.ndarray,
        flow: np.ndarray,
        hint: np.ndarray,
        connectors: np.ndarray,
        max_passes: int = 1000,
    ) -> Simplex | None:
        """A strongly feasible basis for a feasible `flow` (conservation holding against the supplies it
        was found for): cycles of arcs strictly inside their bounds are cancelled (at no extra cost when
        the flow is optimal on them), those arcs span a forest, `connectors` (arcs at a bound, in order of
        preference) join its trees where they can without breaking strong feasibility (_spanning), and
        each tree left over hangs from the root by an artificial arc carrying nothing, priced so that the
        potential of the node it hangs from is its `hint` (the others follow from the tree's arcs). None:
        the cycles were not cancelled within max_passes passes."""
        m, n = int(tails.size), int(n_nodes)
        sx = cls.__new__(cls)
        sx.m, sx.n = m, n
        root = n
        sx.source = source = np.empty(m + n, np.int32)
        sx.target = target = np.empty(m + n, np.int32)
        sx.cap = cap = np.empty(m + n, np.int64)
        sx.cost = cost = np.zeros(m + n, np.int64)
        sx.flow = fl = np.zeros(m + n, np.int64)
        source[:m], target[:m], cap[:m], cost[:m], fl[:m] = tails, heads, caps, costs, flow
        source[m:] = np.arange(n, dtype=np.int32)
        target[m:] = root
        cap[m:] = INF
        inner = np.flatnonzero((fl[:m] > 0) & (fl[:m] < cap[:m]))
        if _cancel_interior_cycles(n, source, target, cap, cost, fl, inner, max_passes) < 0:
            return None
        inner = inner[(fl[inner] > 0) & (fl[inner] < cap[inner])]
        tree = _spanning(n, source, target, cap, fl, inner, np.asarray(connectors, np.int64))
        reps = tree[tree >= m] - m
        cost[m + reps] = -np.asarray(hint, np.int64)[reps]  # the root at potential 0: pi[rep] = hint[rep]
        sx.state = state = np.where(fl == 0, LOWER, UPPER).astype(np.int8)
        state[tree] = TREE
        state[m:][~np.isin(np.arange(n), reps)] = LOWER
        sx.parent = np.empty(n + 1, np.int32)
        sx.pred = np.empty(n + 1, np.int32)
        sx.pred_dir = np.empty(n + 1, np.int8)
        sx.thread = np.empty(n + 1, np.int32)
        sx.rev_thread = np.empty(n + 1, np.int32)
        sx.succ_num = np.empty(n + 1, np.int32)
        sx.last_succ = np.empty(n + 1, np.int32)
        sx.pi = np.empty(n + 1, np.int64)
        ok = _hang_tree(root, tree, source, target, cost, sx.parent, sx.pred, sx.pred_dir, sx.thread,
                        sx.rev_thread, sx.succ_num, sx.last_succ, sx.pi)  # fmt: skip
        if not ok:
            raise AssertionError("the basis arcs do not form a spanning tree")
        sx.pivots = 0
        sx._pricing = (np.empty(0, np.int64), np.zeros(3, np.int64))
        return sx

    def run(self, search: np.ndarray, max_pivots: int = 2**62, listed: int = CANDIDATES) -> bool:
        """Pivot until no arc of `search` (indices of real arcs) has a negative reduced cost; False when
        that took more than max_pivots pivots (the basis is then valid but not optimal, and the next run
        goes on pricing where this one stopped).

        Pricing: a candidate list of up to `listed` negative arcs gathered in one scan and pivoted on
        best first for up to listed/10 pivots before the next scan. Near the optimum few arcs are
        negative among many, where LEMON's default block search scans most of them per pivot (measured
        and dropped: 5.8 s against 4.2-4.6 s for the simplex finish of the 5M-arc day moved by 5 %)."""
        if listed < 1:
            raise ValueError("the candidate list needs room for one arc at least")
        search = np.ascontiguousarray(search, dtype=np.int32)
        if search.size == 0:
            return True
        cand, io = self._pricing
        if cand.size != listed:  # another list length: pricing starts afresh
            cand, io = np.empty(listed, np.int64), np.zeros(3, np.int64)
            self._pricing = (cand, io)
        done = _pivot_loop(self.source, self.target, self.cap, self.cost, self.flow, self.state,
                           self.parent, self.pred, self.pred_dir, self.thread, self.rev_thread,
                           self.succ_num, self.last_succ, self.pi, search, listed, max(3, listed // 10),
                           max_pivots, cand, io)  # fmt: skip
        if done < 0:
            self.pivots += max_pivots
            return False
        self.pivots += done
        return True

    def violations(self) -> np.ndarray:
        """The real arcs whose reduced cost is negative in the direction they may move."""
        return _violations(self.source, self.target, self.cost, self.state, self.pi, self.m)

    def potential(self) -> I64:
        return self.pi[: self.n] - self.pi[self.n]
