"""pgharbor: PostgreSQL connection management for Python services and tools."""
