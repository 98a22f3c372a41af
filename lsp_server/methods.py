"""The names of Codetailor's own LSP methods and commands, as they go on the wire.

The server registers them (lsp/handlers.py), the benchmarks' client sends them
(measure/client.py), and the editor plugins under editors/ spell them the same
way. Plain strings, no imports: every layer may use them.
"""

from __future__ import annotations

# Commands (workspace/executeCommand).
ACCEPTED = "codetailor.accepted"  # an item's command: [kind, id, part?] of an accepted suggestion
STATUS = "codetailor.status"  # what the server holds and has counted, as one object

# Notifications from the editor.
CURSOR = "codetailor/cursor"  # where the editor's cursor rests (VS Code, Neovim, Emacs send it)
DISMISSED = "codetailor/dismissed"  # the user hid a shown suggestion (the Neovim plugin)

# Next-edit suggestions, as the Copilot language server names them (its README, "Next Edit
# Suggestions"): a request for the edit the user will make next near the cursor, and a
# notification that the editor showed one. Not part of LSP 3.18.
INLINE_EDIT = "textDocument/copilotInlineEdit"
DID_SHOW_INLINE_EDIT = "textDocument/didShowInlineEdit"
# The command each next edit carries ([id]); the editor runs it after applying the edit.
# Also accepted as a notification of the same name.
ACCEPTED_NEXT_EDIT = "codetailor.acceptedNextEdit"
