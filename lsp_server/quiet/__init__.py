"""Show or stay quiet: a per-repository filter, learned from the local feedback log.

The server asks it, per suggestion, how likely the user is to accept it, and shows the
suggestion only when that reaches the threshold the `quietness` setting states
(lsp_server.session.quiet decides and logs; Copilot's contextual filter and Cursor
Tab's reward are the anchors). Modules:

- `features`: the feature vector of a suggestion in its place (`FEATURES`, `features`,
  `History`); pure, computed per request. `edit_features`: a next edit's
  (`EDIT_FEATURES`, `edit_features`).
- `filter`: the stored filters (`QuietFilter`, one per kind of suggestion in a
  `QuietFilters` file: JSON with a schema version, scored in pure Python), the reward's
  `threshold`, and `GLOBAL` / `GLOBAL_NEXT_EDIT`, the starting rules; pure.
- `store`: where a repository's filter lives (`filter_path`, beside its feedback log),
  `write_filter` / `read_filter`, and `FilterFile`, the server's reloading reader.
- `learn`: `codetailor feedback learn` and `finetune --feedback`: the log to examples,
  logistic regression against gradient boosting, calibration (scikit-learn, never
  imported by the server).

This `__init__` imports nothing, so the session's pure modules may import `features`
and `filter` without loading the I/O parts.
"""
