"""Text sources: the user's files and the embedded, download-free domains."""

from .sources import EMBEDDED, load_texts, read_text_file, sample

__all__ = ["EMBEDDED", "load_texts", "read_text_file", "sample"]
