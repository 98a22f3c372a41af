"""The session layer, pure (no pygls, no torch): one client's settings, documents and
completion policy (`session.Session`), typing-through, positions, and the workspace context."""
