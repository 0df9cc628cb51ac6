"""History retention (issue 3, item 14): finished runs deleted by a global or per-DAG policy, in
small batches, archived to JSON Lines first when configured, so that the database and the dashboard
stay fast in a deployment's second year. See docs/scheduling/retention.md.

- ``policy``: which runs may go (pure rule + the query that locks them)
- ``export``: the JSON Lines archive written before a delete commits
- ``job``: the periodic loop the service runs (``RetentionJob``)
"""

from app.retention.job import RetentionJob
from app.retention.policy import RetentionPolicy

__all__ = ["RetentionJob", "RetentionPolicy"]
