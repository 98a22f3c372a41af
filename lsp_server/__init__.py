"""Codetailor's language server: model loading, prompts, the engine and the LSP handlers.

Importing this package is cheap and has no side effects; torch and transformers
are imported by the modules that need them, when they are used.
"""

__version__ = "0.1.0"
