"""The local feedback log: what was suggested, and what the user did with it.

The room where the log's disk I/O lives, beside the pure session it serves:

- `events`: the typed, frozen event records and their JSON lines (`to_json`,
  `FeedbackEvent.from_json`), with a schema version; the one definition of the format.
- `log`: where a repository's log lives (`feedback_dir`), the one writer
  (`EventLog.append`, append-only, fsynced at most once a second, size-bounded) and the one reader
  (`read_events`).
- `suggestions`: the events folded per shown suggestion (`read_suggestions`; next
  edits: `next_edit_records`), which
  every consumer reads (`feedback stats`, `finetune --feedback`, the sweep).
- `recorder`: `FeedbackRecorder` turns what an editor session sees into events
  (secret redaction, retention checks, what the user typed instead).
- `recording`: `Recording`, the session's `RecordingLike`, writes on its own thread.

Nothing here is ever sent anywhere. Imports neither pygls nor torch.
"""

from lsp_server.feedback.events import (
    SCHEMA_VERSION,
    Accepted,
    AcceptKind,
    Dismissed,
    FeedbackEvent,
    NewerSchemaError,
    Retained,
    Shown,
    Superseded,
    Suppressed,
    TriggerKind,
    Typed,
    TypedThrough,
)
from lsp_server.feedback.log import (
    DEFAULT_MAX_BYTES,
    EVENTS,
    OLDER,
    EventLog,
    count_events,
    feedback_dir,
    read_events,
    remove_log,
    repo_key,
)
from lsp_server.feedback.recorder import FeedbackRecorder, Suggestion
from lsp_server.feedback.recording import SIMULATED_CLIENT, Recording
from lsp_server.feedback.suggestions import (
    NextEditRecord,
    SuggestionRecord,
    next_edit_records,
    read_suggestions,
    suggestion_records,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EVENTS",
    "OLDER",
    "SCHEMA_VERSION",
    "SIMULATED_CLIENT",
    "AcceptKind",
    "Accepted",
    "Dismissed",
    "EventLog",
    "FeedbackEvent",
    "FeedbackRecorder",
    "NewerSchemaError",
    "Recording",
    "Retained",
    "Shown",
    "Suggestion",
    "SuggestionRecord",
    "Superseded",
    "Suppressed",
    "TriggerKind",
    "Typed",
    "TypedThrough",
    "count_events",
    "feedback_dir",
    "read_events",
    "read_suggestions",
    "next_edit_records",
    "NextEditRecord",
    "remove_log",
    "repo_key",
    "suggestion_records",
]
