"""A stand-in for flyctl (`fly`) written from flyctl's source, whose machines really run (see fly.py, machine.py)."""
