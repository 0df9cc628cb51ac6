"""The graph view's layered layout: layers, crossing reduction, waypoints and coordinates."""

from __future__ import annotations

import itertools

from app.dashboard.graph_layout import Spacing, assign_layers, count_crossings, layout_dag


def test_a_task_sits_one_layer_right_of_its_furthest_upstream() -> None:
    nodes = ["a", "b", "c", "d"]
    edges = [("a", "b"), ("b", "c"), ("a", "d"), ("c", "d")]

    assert assign_layers(nodes, edges) == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_every_edge_points_right_and_ends_on_the_boxes() -> None:
    nodes = ["extract", "clean", "load", "report"]
    edges = [("extract", "clean"), ("clean", "load"), ("extract", "report"), ("load", "report")]
    spacing = Spacing()

    layout = layout_dag(nodes, edges, spacing)

    for edge in layout.edges:
        source, target = layout.nodes[edge.source], layout.nodes[edge.target]
        assert source.x < target.x
        assert edge.points[0] == (source.x + spacing.node_width, source.y + spacing.node_height / 2)
        assert edge.points[-1] == (target.x, target.y + spacing.node_height / 2)
        xs = [x for x, _ in edge.points]
        assert xs == sorted(xs)


def test_an_edge_skipping_layers_bends_through_a_waypoint_per_layer() -> None:
    layout = layout_dag(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")])

    long_edge = next(e for e in layout.edges if (e.source, e.target) == ("a", "d"))
    short_edge = next(e for e in layout.edges if (e.source, e.target) == ("a", "b"))
    assert len(short_edge.points) == 2
    assert len(long_edge.points) == 2 + 2 * 2  # enters and leaves layers 1 and 2
    assert long_edge.path.startswith("M") and long_edge.path.count("C") == 5


def test_boxes_never_overlap_and_fit_in_the_drawing() -> None:
    nodes = [f"t{i}" for i in range(12)]
    edges = [(f"t{i}", f"t{j}") for i in range(12) for j in range(i + 1, 12) if (i * j) % 5 == 1]

    layout = layout_dag(nodes, edges)

    assert set(layout.nodes) == set(nodes)
    for a, b in itertools.combinations(layout.nodes.values(), 2):
        apart_x = a.x + a.width <= b.x or b.x + b.width <= a.x
        apart_y = a.y + a.height <= b.y or b.y + b.height <= a.y
        assert apart_x or apart_y, (a, b)
    for node in layout.nodes.values():
        assert node.x >= 0 and node.x + node.width <= layout.width
        assert node.y >= 0 and node.y + node.height <= layout.height


def test_barycentre_ordering_untangles_crossed_edges() -> None:
    # Listed so that layer 1 starts as [x, y] while a feeds y and b feeds x: one crossing.
    nodes = ["a", "b", "x", "y"]
    edges = [("a", "y"), ("b", "x")]
    assert count_crossings([["a", "b"], ["x", "y"]], edges) == 1

    layout = layout_dag(nodes, edges)

    rows = [[n for n in layout.nodes if layout.nodes[n].layer == layer] for layer in (0, 1)]
    rows = [sorted(row, key=lambda n: layout.nodes[n].row) for row in rows]
    assert count_crossings(rows, edges) == 0


def test_crossings_are_reduced_on_a_wider_graph() -> None:
    tops = [f"s{i}" for i in range(5)]
    bottoms = [f"d{i}" for i in range(5)]
    edges = [(f"s{i}", f"d{4 - i}") for i in range(5)]  # fully reversed: 10 crossings as listed
    assert count_crossings([tops, bottoms], edges) == 10

    layout = layout_dag(tops + bottoms, edges)

    ordered = [sorted(group, key=lambda n: layout.nodes[n].row) for group in (tops, bottoms)]
    assert count_crossings(ordered, edges) == 0


def test_the_layout_is_deterministic_and_ignores_unknown_or_repeated_edges() -> None:
    nodes = ["a", "b", "c"]
    edges = [("a", "b"), ("a", "c"), ("a", "b"), ("ghost", "c")]

    first, second = layout_dag(nodes, edges), layout_dag(nodes, edges)

    assert first == second
    assert [(e.source, e.target) for e in first.edges] == [("a", "b"), ("a", "c")]


def test_an_empty_dag_is_an_empty_drawing_and_one_task_a_single_box() -> None:
    spacing = Spacing(margin=10)
    empty = layout_dag([], [], spacing)
    assert (empty.nodes, empty.edges) == ({}, [])
    assert (empty.width, empty.height) == (20, 20)

    single = layout_dag(["only"], [], spacing)
    assert single.width == 20 + spacing.node_width
    assert single.height == 20 + spacing.node_height
