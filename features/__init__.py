"""Point-in-time features, labels, ingestion and the Feast repo (the source of truth for names)."""
