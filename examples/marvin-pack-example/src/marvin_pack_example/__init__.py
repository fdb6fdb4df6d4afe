"""An example Marvin command pack (docs/packs.md)."""

__version__ = "0.1.0"
