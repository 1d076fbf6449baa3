"""Tests of the ClickHouse sink against a real in-process chDB."""
