"""Checks every source's text goes through: regular files only, binary-looking text refused, duplicates found before
the split, and the English check."""
