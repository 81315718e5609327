"""Single-linkage groups from tied pairs, and how an over-long chain is cut.

Ties merge transitively, so consecutive video frames (each within a few bits of the next)
chain into one group however far apart its ends are. A group that large unbalances a split
(a fixed 1 % of the images cannot go where the stratification wants them). ``cut_large_groups``
re-groups such a group at a lower threshold, only inside that group and only as far as
needed: its single-linkage tree (the minimum spanning tree of its ties) loses its weakest
link (the largest Hamming distance; among equal ones the cut that gives the most even
halves) until every piece has at most ``max_images``. Every cut link is returned: those are
near-duplicate pairs that the split may now put on two sides, and the split reports which
ones it did (``splits.make_splits``).
"""

from __future__ import annotations

import numpy as np


def components(n: int, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` nodes joined by the edges ``(ii[k], jj[k])``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(ii), dtype=np.int8), (ii, jj)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def groups_from_labels(labels: np.ndarray) -> list[np.ndarray]:
    """Members (ascending indices) of every label shared by more than one node."""
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return [m for m in np.split(order, bounds) if len(m) > 1]


def _spanning_tree(members: np.ndarray, ii: np.ndarray, jj: np.ndarray, dd: np.ndarray):
    """The minimum spanning tree of one group's ties: local ``(u, v, distance)`` arrays."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    inside = np.isin(ii, members) & np.isin(jj, members)
    u, v = np.searchsorted(members, ii[inside]), np.searchsorted(members, jj[inside])
    k = len(members)
    # +1: scipy reads a zero weight as "no edge", and identical hashes (distance 0) are ties too
    tree = minimum_spanning_tree(coo_matrix((dd[inside].astype(np.float64) + 1.0, (u, v)), shape=(k, k))).tocoo()
    return tree.row.astype(np.int64), tree.col.astype(np.int64), tree.data.astype(np.int64) - 1


def _walk(root: int, adjacency: list[list[tuple[int, int]]], alive: np.ndarray) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """Nodes reachable from ``root`` over alive edges (DFS order) and each one's ``(parent, edge)``."""
    order, parent, stack = [], {root: (-1, -1)}, [root]
    while stack:
        node = stack.pop()
        order.append(node)
        for other, edge in adjacency[node]:
            if alive[edge] and other not in parent:
                parent[other] = (node, edge)
                stack.append(other)
    return order, parent


def _cut_tree(k: int, u: np.ndarray, v: np.ndarray, dist: np.ndarray, max_images: int):
    """Pieces (local node lists) of a k-node tree cut at its weakest links, and the cut edge indices."""
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(k)]
    for e, (a, b) in enumerate(zip(u.tolist(), v.tolist())):
        adjacency[a].append((b, e))
        adjacency[b].append((a, e))
    alive = np.ones(len(u), dtype=bool)
    pieces, cuts, todo = [], [], [0]
    while todo:
        order, parent = _walk(todo.pop(), adjacency, alive)
        if len(order) <= max_images:
            pieces.append(order)
            continue
        below = {node: 1 for node in order}  # subtree sizes, children before parents
        for node in reversed(order[1:]):
            below[parent[node][0]] += below[node]
        child_edges = [(node, parent[node][1]) for node in order[1:]]
        weakest = max(dist[e] for _, e in child_edges)
        child, edge = max(((c, e) for c, e in child_edges if dist[e] == weakest),
                          key=lambda ce: (min(below[ce[0]], len(order) - below[ce[0]]), -ce[1]))
        alive[edge] = False
        cuts.append(edge)
        todo += [order[0], child]
    return pieces, cuts


def cut_large_groups(groups: list[np.ndarray], ii: np.ndarray, jj: np.ndarray, dd: np.ndarray,
                     max_images: int) -> tuple[list[np.ndarray], list[tuple[int, int, int]]]:
    """Groups with more than ``max_images`` members cut at their weakest single-linkage links.

    Args:
        groups: members (ascending node indices) of each group.
        ii, jj, dd: every tied pair and its Hamming distance.
        max_images: the largest group kept whole (>= 2).

    Returns:
        ``(groups, cut links)``: pieces replace the groups they came from; each cut link is
        ``(i, j, distance)`` with ``i < j`` in node indices.
    """
    if max_images < 2:
        raise ValueError(f"a near-duplicate group cap must be >= 2 images, got {max_images}")
    out, cut_links = [], []
    for members in groups:
        if len(members) <= max_images:
            out.append(members)
            continue
        u, v, dist = _spanning_tree(members, ii, jj, dd)
        pieces, cuts = _cut_tree(len(members), u, v, dist, max_images)
        out += [np.sort(members[p]) for p in pieces if len(p) > 1]
        cut_links += [(int(min(members[u[e]], members[v[e]])), int(max(members[u[e]], members[v[e]])), int(dist[e]))
                      for e in cuts]
    return out, cut_links
