"""The demo shop: four services (orders, inventory, billing, courier) that agree through events.

Each service owns its keys (``{<namespace>:shop}:<service>:…``), reads the shop's
one stream ``{<namespace>:shop}`` under its own consumer group, and emits what it
did as events. Orders are accepted at once and confirmed or cancelled later, by
choreography or by an orchestrated saga with per-step timeouts.

Introduced in lessons 06-12.
"""

from eventlab.shop.billing import Billing, decline_cards
from eventlab.shop.core import (
    DEFAULT_STOCK,
    Saga,
    convergence_frame,
    disagreement_frame,
    make_services,
    order_events,
    owners,
    place_order,
    random_orders,
    reset,
    setup,
    transitions_frame,
    views_frame,
    writers_frame,
)
from eventlab.shop.courier import Courier, close_zones
from eventlab.shop.events import SCHEMAS, SERVICES, TERMINAL, register_schemas, stream
from eventlab.shop.inventory import Inventory, levels, restock
from eventlab.shop.orders import Orders
from eventlab.shop.sim import Delivery, deliver

__all__ = [
    "DEFAULT_STOCK",
    "SCHEMAS",
    "SERVICES",
    "TERMINAL",
    "Billing",
    "Courier",
    "Delivery",
    "Inventory",
    "Orders",
    "Saga",
    "close_zones",
    "convergence_frame",
    "decline_cards",
    "deliver",
    "disagreement_frame",
    "levels",
    "make_services",
    "order_events",
    "owners",
    "place_order",
    "random_orders",
    "register_schemas",
    "reset",
    "restock",
    "setup",
    "stream",
    "transitions_frame",
    "views_frame",
    "writers_frame",
]
