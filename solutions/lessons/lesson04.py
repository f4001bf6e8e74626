"""Lesson 04's try-it cells, with reference answers (see lesson00.py for the format)."""

from eventlab.consumer import PermanentError


# TRY IT 04-classify: handle_payment
def handle_payment(event, provider):
    """Charge the order with provider.charge(event).

    The provider raises TimeoutError when it is slow (worth retrying) and
    ValueError when the card is declined (retrying can never help).
    """
    # BEGIN SOLUTION
    try:
        provider.charge(event)
    except ValueError as declined:
        raise PermanentError(str(declined)) from declined
    # END SOLUTION
