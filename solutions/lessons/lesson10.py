"""Lesson 10's try-it cells, with reference answers (see lesson00.py for the format)."""


# TRY IT 10-causal-chain: causal_chain
def causal_chain(events, event):
    """The types of the events that led to ``event``, from the customer's first one to it."""
    # BEGIN SOLUTION
    by_id = {e.id: e for e in events}
    chain = [event]
    while chain[-1].causationid in by_id:  # follow one parent at a time
        chain.append(by_id[chain[-1].causationid])
    return [e.type for e in reversed(chain)]
    # END SOLUTION
