"""Experiments: a typed config -> library calls -> a run directory."""
