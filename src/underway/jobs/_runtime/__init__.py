"""The long-running parts of a node, one private module each (start/stop lifecycle)."""
