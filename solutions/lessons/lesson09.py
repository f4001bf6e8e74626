"""Lesson 09's try-it cells, with reference answers (see lesson00.py for the format)."""


# TRY IT 09-units-sold: units_sold
def units_sold(event):
    """The writes one event makes to "units sold per sku": reserved minus released again."""
    # BEGIN SOLUTION
    sign = {"StockReserved": 1, "StockReleased": -1}.get(event.type)
    if sign is None:
        return []
    return [("hincrby", item["sku"], sign * int(item["qty"])) for item in event.data["items"]]
    # END SOLUTION
