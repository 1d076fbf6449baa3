"""Where rated windows and rejected events are stored: the I/O edge of the job.

Writers here are engine-free (plain methods taking domain values); the stream
wiring that calls them lives in ``dataflows/``.
"""
