"""``modelops demo``: the whole product on real data in the local sandbox (see flow.py)."""
