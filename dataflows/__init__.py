"""Bytewax wiring and the command line: thin glue around operators/ and sinks/."""
