"""The Arrow storage of the bundle builder: records, token rows and packed blocks as memory-mapped cache files,
each verified against its recorded sha256 (integrity.py)."""
