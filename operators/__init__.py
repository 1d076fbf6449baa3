"""Pure metering logic: parse/validate, dedup, windowing, rating, quota.

Nothing in this package imports a stream engine, a broker, Redis or
ClickHouse; everything here takes data and returns data.
"""
