"""Lesson 01's try-it cells, with reference answers (see lesson00.py for the format)."""


# TRY IT 01-fold: fold
def fold(events):
    """Return {order id: {"items": …, "total": …, "status": "placed" | "cancelled"}}."""
    # BEGIN SOLUTION
    state = {}
    for event in events:  # oldest first
        if event.type == "OrderPlaced":
            state[event.subject] = {"items": 0, "total": 0.0, "status": "placed"}
        order = state[event.subject]
        if event.type == "OrderCancelled":
            order["status"] = "cancelled"
            continue
        order["items"] += event.data["items"]
        order["total"] = round(order["total"] + event.data["total"], 2)
    return state
    # END SOLUTION
