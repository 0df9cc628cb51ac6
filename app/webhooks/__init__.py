"""Webhook triggers: verify a signed call, map its payload into a run's conf, record the delivery.

``signatures`` and ``payloads`` are pure; ``deliveries`` is the use case behind
``POST /api/v1/webhooks/{hook_id}``; ``hooks`` manages hooks for the REST API; ``declared`` keeps
the hooks a DAG file declares in line with its latest version.
"""
