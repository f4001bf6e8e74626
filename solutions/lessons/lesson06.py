"""Lesson 06's try-it cells, with reference answers (see lesson00.py for the format)."""

from eventlab import shop


# TRY IT 06-strict-billing: StrictBilling
class StrictBilling(shop.Billing):
    """Billing, plus one fraud rule: decline any order above 500 cents (500 itself is fine)."""

    def interpret(self, event, results):
        reads = super().interpret(event, results)  # {"declined": bool} for a capture, else {}
        # BEGIN SOLUTION
        if reads:
            reads["declined"] = reads["declined"] or event.data["total"] > 500
        # END SOLUTION
        return reads
