"""The `meterwax` command line: argument parsing and printing, and nothing that imports it."""
