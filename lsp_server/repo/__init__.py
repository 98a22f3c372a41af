"""A repository as Codetailor reads it: which files count, what they say, the held-out split.

An I/O room: it lists and reads a repository's files (`git ls-files`, bounded
reads), so it is not pure; it imports neither pygls nor torch, since training
and serving both read repositories through it (tests/test_layering.py checks
both). `git` is the one safe way to run git on a user's folder, `files` lists
and reads (nested .gitignore, no symlinks, bounded reads), `secrets` redacts
what must never reach a prompt or a model, `corpus` collects, redacts and
deduplicates a repository's source files. The workspace index
(`lsp_server.index`), training and evaluation all read a repository through here.
"""
