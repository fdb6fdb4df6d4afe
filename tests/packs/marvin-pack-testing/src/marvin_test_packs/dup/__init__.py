"""A pack whose command lives in a submodule (the entry point names a package)."""
