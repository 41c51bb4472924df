"""The sync engine: one run of one table mapping in one direction, page by page (architecture.md)."""
