"""The soak clients, source of the generated ``_sync`` twin."""
