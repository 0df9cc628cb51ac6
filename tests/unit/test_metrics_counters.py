"""Each request path falls in one of four surfaces, so ``weir_http_requests_total`` keeps four
series whatever URLs it is sent, and the hot-path budget tells workers' requests from the rest."""

from __future__ import annotations

import pytest

from app.metrics import SURFACES, surface_of


@pytest.mark.parametrize(
    ("path", "surface"),
    [
        ("/execution/v1/task-instances/7/claim", "execution"),
        ("/execution/v1/heartbeats", "execution"),
        ("/api/v1/dags", "api"),
        ("/api/v1/webhooks/orders", "api"),
        ("/health/live", "other"),
        ("/health/ready", "other"),
        ("/metrics", "other"),
        ("/openapi.json", "other"),
        ("/docs", "other"),
        ("/docs/oauth2-redirect", "other"),
        ("/redoc", "other"),
        ("/", "dashboard"),
        ("/login", "dashboard"),
        ("/dags/etl/runs/manual__1", "dashboard"),
        ("/static/css/weir.css", "dashboard"),
        ("/wp-admin/setup.php", "dashboard"),  # anything unknown: the dashboard's 404 page
        ("/execution", "dashboard"),  # no prefix match without the slash: not a worker route
        ("/apis", "dashboard"),
    ],
)
def test_a_path_belongs_to_one_surface(path: str, surface: str) -> None:
    assert surface_of(path) == surface


def test_every_surface_is_one_of_the_four() -> None:
    paths = ["", "/", "//", "/%00", "/api", "/execution/", "/metrics/x", "/" + "x" * 5000]
    assert {surface_of(path) for path in paths} <= set(SURFACES)
