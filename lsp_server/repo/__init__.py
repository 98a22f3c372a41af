"""A repository as Codetailor reads it: which files count, what they say, the held-out split.

Pure (no torch, no pygls): `files` lists and reads (nested .gitignore, no
symlinks, bounded reads), `secrets` redacts what must never reach a prompt or
a model, `corpus` collects, redacts and deduplicates a repository's source
files. Retrieval, training and evaluation all read a repository through here.
"""
