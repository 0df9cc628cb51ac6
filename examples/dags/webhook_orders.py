"""A webhook trigger: a shop calls Weir when an order is paid, and the run loads that order.

``@dag(triggers=[Webhook(...)])`` gives the DAG the URL
``POST /api/v1/webhooks/webhook_orders.paid``.
Fields of the shop's JSON are picked into the run's ``conf`` by JSON pointer and checked against
the params; only ``"event": "order.paid"`` calls start a run (others are recorded as filtered).
A declared hook has no secret until an admin sets one::

    curl -X POST -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \\
         -d '{}' http://127.0.0.1:8080/api/v1/webhooks/webhook_orders.paid/secret

Then sign each call as docs/webhooks.md shows (``openssl dgst -sha256 -hmac "$SECRET"``).
"""

from weir import Param, Webhook, dag, get_current_context, task


@dag(
    params={
        "order_id": Param(type="integer", minimum=1),
        "amount": Param(type="number", minimum=0),
        "currency": Param("EUR", type="string", pattern="^[A-Z]{3}$"),
    },
    triggers=[
        Webhook(
            "paid",
            signature="timestamped",
            conf={
                "order_id": "/order/id",
                "amount": "/order/total",
                "currency": "/order/currency",
            },
            filters={"/event": "order.paid"},
        )
    ],
    tags=["example"],
)
def webhook_orders():
    """Load one paid order, as the shop's webhook describes it."""

    @task
    def load_order() -> str:
        params = get_current_context().params
        line = f"order {params['order_id']}: {params['amount']} {params['currency']}"
        print("loading", line)
        return line

    load_order()


webhook_orders()
