"""Recipes: end-to-end jobs over the public API (the fine-tune job the climate example runs)."""
