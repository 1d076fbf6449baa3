"""Settings and catalogs, loaded and validated once at start-up."""
