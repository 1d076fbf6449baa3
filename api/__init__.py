"""meterwax HTTP read API: per-tenant usage estimates and dry-run invoices, keyed access."""
