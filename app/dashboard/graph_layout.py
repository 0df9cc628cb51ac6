"""A layered drawing of a DAG for the graph view, computed on the server (no JavaScript library).

The classic Sugiyama steps, kept small: each task goes to the layer of its longest path from a
root (so every edge points right); an edge that skips layers is threaded through invisible
*waypoints*, one per layer it crosses, so it bends around the tasks in between; the tasks of each
layer are then ordered by the barycentre (mean position) of their neighbours, sweeping down and up
a few times and keeping the order with the fewest crossings; last, layers become columns and
positions rows. Pure: ids and edges in, coordinates out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Layout",
    "PlacedEdge",
    "PlacedNode",
    "Spacing",
    "assign_layers",
    "count_crossings",
    "layout_dag",
]

SWEEPS = 4


@dataclass(frozen=True, slots=True)
class Spacing:
    """Sizes in SVG user units."""

    node_width: float = 180.0
    node_height: float = 40.0
    layer_gap: float = 70.0
    row_gap: float = 22.0
    margin: float = 12.0


@dataclass(frozen=True, slots=True)
class PlacedNode:
    """A task's box: ``x``, ``y`` are its top-left corner."""

    node_id: str
    layer: int
    row: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class PlacedEdge:
    """An edge as a polyline from the source's right side to the target's left side."""

    source: str
    target: str
    points: tuple[tuple[float, float], ...]

    @property
    def path(self) -> str:
        """An SVG path: horizontal cubic curves between consecutive points."""
        (x, y), *rest = self.points
        parts = [f"M{x:.1f},{y:.1f}"]
        for nx, ny in rest:
            middle = (x + nx) / 2
            parts.append(f"C{middle:.1f},{y:.1f} {middle:.1f},{ny:.1f} {nx:.1f},{ny:.1f}")
            x, y = nx, ny
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Layout:
    nodes: dict[str, PlacedNode]
    edges: list[PlacedEdge]
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class _Waypoint:
    """Where an edge crosses a layer it does not end in."""

    source: str
    target: str
    layer: int


_Vertex = str | _Waypoint


def assign_layers(node_ids: Sequence[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering: a root is in layer 0, any other node one layer right of its
    furthest upstream. ``node_ids`` must be in topological order (upstreams first)."""
    upstream: dict[str, list[str]] = {node: [] for node in node_ids}
    for source, target in edges:
        upstream[target].append(source)
    layers: dict[str, int] = {}
    for node in node_ids:
        layers[node] = 1 + max((layers[up] for up in upstream[node]), default=-1)
    return layers


def count_crossings(
    rows: Sequence[Sequence[_Vertex]], links: Iterable[tuple[_Vertex, _Vertex]]
) -> int:
    """Edge crossings between adjacent layers (``links`` join a layer to the next one)."""
    position = {
        vertex: (layer, i) for layer, row in enumerate(rows) for i, vertex in enumerate(row)
    }
    by_layer: dict[int, list[tuple[int, int]]] = {}
    for source, target in links:
        layer, top = position[source]
        by_layer.setdefault(layer, []).append((top, position[target][1]))
    crossings = 0
    for pairs in by_layer.values():
        for i, (a_top, a_bottom) in enumerate(pairs):
            for b_top, b_bottom in pairs[i + 1 :]:
                crossings += (a_top - b_top) * (a_bottom - b_bottom) < 0
    return crossings


def layout_dag(
    node_ids: Sequence[str], edges: Iterable[tuple[str, str]], spacing: Spacing | None = None
) -> Layout:
    """Place ``node_ids`` (topological order) and route ``edges`` (``(upstream, downstream)``)."""
    spacing = spacing or Spacing()
    known = set(node_ids)
    edge_list = [(s, t) for s, t in dict.fromkeys(edges) if s in known and t in known]
    layers = assign_layers(node_ids, edge_list)
    rows, links, chains = _thread_waypoints(node_ids, layers, edge_list)
    rows = _order_rows(rows, links)
    return _place(rows, chains, spacing)


def _thread_waypoints(
    node_ids: Sequence[str], layers: Mapping[str, int], edges: Sequence[tuple[str, str]]
) -> tuple[list[list[_Vertex]], list[tuple[_Vertex, _Vertex]], list[list[_Vertex]]]:
    """Layers as rows of vertices, the links between adjacent layers, and each edge's chain."""
    rows: list[list[_Vertex]] = [[] for _ in range(max(layers.values(), default=-1) + 1)]
    for node in node_ids:
        rows[layers[node]].append(node)
    links: list[tuple[_Vertex, _Vertex]] = []
    chains: list[list[_Vertex]] = []
    for source, target in edges:
        chain: list[_Vertex] = [source]
        for layer in range(layers[source] + 1, layers[target]):
            waypoint = _Waypoint(source, target, layer)
            rows[layer].append(waypoint)
            chain.append(waypoint)
        chain.append(target)
        links.extend(itertools.pairwise(chain))
        chains.append(chain)
    return rows, links, chains


def _order_rows(
    rows: list[list[_Vertex]], links: Sequence[tuple[_Vertex, _Vertex]]
) -> list[list[_Vertex]]:
    """Barycentre sweeps, down then up, keeping the order with the fewest crossings."""
    upstream: dict[_Vertex, list[_Vertex]] = {}
    downstream: dict[_Vertex, list[_Vertex]] = {}
    for source, target in links:
        upstream.setdefault(target, []).append(source)
        downstream.setdefault(source, []).append(target)
    best, fewest = rows, count_crossings(rows, links)
    current = [list(row) for row in rows]
    for _ in range(SWEEPS):
        for layer in range(1, len(current)):
            current[layer] = _by_barycentre(current[layer], current[layer - 1], upstream)
        for layer in range(len(current) - 2, -1, -1):
            current[layer] = _by_barycentre(current[layer], current[layer + 1], downstream)
        crossings = count_crossings(current, links)
        if crossings < fewest:
            best, fewest = [list(row) for row in current], crossings
        if fewest == 0:
            break
    return best


def _by_barycentre(
    row: list[_Vertex], fixed: list[_Vertex], neighbours: Mapping[_Vertex, list[_Vertex]]
) -> list[_Vertex]:
    """``row`` sorted by its neighbours' mean position in the ``fixed`` layer; a vertex with no
    neighbour there keeps its own position (a stable sort keeps ties in their order)."""
    position = {vertex: i for i, vertex in enumerate(fixed)}

    def key(item: tuple[int, _Vertex]) -> float:
        index, vertex = item
        seen = [position[n] for n in neighbours.get(vertex, ()) if n in position]
        return sum(seen) / len(seen) if seen else float(index)

    return [vertex for _, vertex in sorted(enumerate(row), key=key)]


def _place(rows: list[list[_Vertex]], chains: list[list[_Vertex]], spacing: Spacing) -> Layout:
    """Columns for layers, rows centred vertically; edges leave right and enter left."""
    step_x = spacing.node_width + spacing.layer_gap
    step_y = spacing.node_height + spacing.row_gap
    tallest = max((len(row) for row in rows), default=0)
    corner: dict[_Vertex, tuple[float, float]] = {}
    nodes: dict[str, PlacedNode] = {}
    for layer, row in enumerate(rows):
        top = spacing.margin + (tallest - len(row)) * step_y / 2
        for index, vertex in enumerate(row):
            x, y = spacing.margin + layer * step_x, top + index * step_y
            corner[vertex] = (x, y)
            if isinstance(vertex, str):
                nodes[vertex] = PlacedNode(
                    vertex, layer, index, x, y, spacing.node_width, spacing.node_height
                )
    middle = spacing.node_height / 2
    edges: list[PlacedEdge] = []
    for chain in chains:
        (sx, sy), (tx, ty) = corner[chain[0]], corner[chain[-1]]
        points = [(sx + spacing.node_width, sy + middle)]
        for waypoint in chain[1:-1]:
            wx, wy = corner[waypoint]
            points += [(wx, wy + middle), (wx + spacing.node_width, wy + middle)]
        points.append((tx, ty + middle))
        edges.append(PlacedEdge(str(chain[0]), str(chain[-1]), tuple(points)))
    width = 2 * spacing.margin + max(len(rows) * step_x - spacing.layer_gap, 0)
    height = 2 * spacing.margin + max(tallest * step_y - spacing.row_gap, 0)
    return Layout(nodes, edges, width, height)
