"""The local demo: sample alerts through the real pipeline against the simulator.

``python -m demo`` (or ``make demo``) starts the Defender API simulator, feeds a
stream of Defender XDR streaming-API messages through the Event Hub handler, follows
the machine actions it created to their final status, prints what happened, and
stops what it started.
"""
