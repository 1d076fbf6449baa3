"""The read side: estimates, invoices, quotes and reconciliation, for the CLI and the API.

No argument parsing, HTTP, printing or Bytewax here.
"""
