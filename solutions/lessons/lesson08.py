"""Lesson 08's try-it cells, with reference answers (see lesson00.py for the format)."""


def with_field(base, name, spec, *, required=False):
    """Return a copy of `base` with one more property."""
    props = {**base["properties"], name: spec}
    return {**base, "properties": props, "required": base["required"] + [name] * required}


# TRY IT 08-currency: add_currency
def add_currency(payload):
    """Return PaymentCaptured's payload schema plus a ``currency`` field BACKWARD accepts."""
    # BEGIN SOLUTION
    currency = {"enum": ["EUR", "USD"], "default": "EUR"}  # old events read as EUR
    return with_field(payload, "currency", currency, required=True)
    # END SOLUTION
