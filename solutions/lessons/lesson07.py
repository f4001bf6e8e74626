"""Lesson 07's try-it cells, with reference answers (see lesson00.py for the format)."""


# TRY IT 07-compensations: compensations
def compensations(failure):
    """The commands the orchestrator sends when a step fails with ``failure``.

    failure: "StockRejected", "PaymentDeclined" or "CourierUnavailable".
    Return a list of "ReleaseStock" / "RefundPayment" (any order; [] if nothing to undo).
    """
    # BEGIN SOLUTION
    undo = {
        "StockRejected": [],  # nothing was reserved, nothing was paid
        "PaymentDeclined": ["ReleaseStock"],  # the stock was reserved, no money was taken
        "CourierUnavailable": ["ReleaseStock", "RefundPayment"],  # both happened
    }
    return undo[failure]
    # END SOLUTION
