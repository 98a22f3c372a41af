/**
 * What the status-bar item and "Codetailor: Show Status" say.
 *
 * Pure: no `vscode` import. `statusView` turns the extension's view of the
 * server into the item's text and tooltip; `formatStatus` turns the answer of
 * the server's `codetailor.status` command into lines for people.
 */

export type ServerState =
  | { kind: "starting" }
  | { kind: "loading"; message?: string; percentage?: number }
  | { kind: "ready"; model?: string | null; adapter?: string | null; device?: string | null }
  | { kind: "disabled"; model?: string | null; adapter?: string | null }
  | { kind: "error"; message: string }
  | { kind: "stopped" }
  | { kind: "untrusted" };

export interface StatusView {
  text: string;
  tooltip: string;
  /** `error` and `warning` pick the status bar's background colour. */
  severity: "normal" | "warning" | "error";
}

/** The last path component: adapters are folders, models may be paths or hub ids. */
export function shortName(name: string | null | undefined): string {
  if (!name) return "";
  const parts = name.replace(/[\\/]+$/, "").split(/[\\/]/);
  return parts[parts.length - 1] || name;
}

function modelLabel(model?: string | null, adapter?: string | null): string {
  const m = shortName(model) || "default model";
  return adapter ? `${m} + ${shortName(adapter)}` : m;
}

export function statusView(state: ServerState): StatusView {
  switch (state.kind) {
    case "starting":
      return { text: "$(loading~spin) Codetailor", tooltip: "Codetailor: starting the server", severity: "normal" };
    case "loading":
      // The stage the server reports ("loading smollm2-135m", "warming up"), not its
      // percentage: there are no steps between 0% and 90%, so a number would only jump.
      return {
        text: `$(loading~spin) Codetailor`,
        tooltip: `Codetailor: ${state.message ?? "loading the model"}…`,
        severity: "normal",
      };
    case "ready": {
      const label = modelLabel(state.model, state.adapter);
      const where = state.device ? ` on ${state.device}` : "";
      return {
        text: `$(sparkle) ${label}`,
        tooltip: `Codetailor: ready — ${label}${where}. Click for status.`,
        severity: "normal",
      };
    }
    case "disabled":
      return {
        text: "$(circle-slash) Codetailor",
        tooltip: `Codetailor: completions off (${modelLabel(state.model, state.adapter)}). Run "Codetailor: Toggle Completions" to turn them on.`,
        severity: "warning",
      };
    case "error":
      return { text: "$(error) Codetailor", tooltip: `Codetailor: ${state.message}`, severity: "error" };
    case "untrusted":
      return {
        text: "$(shield) Codetailor",
        tooltip:
          "Codetailor is off in Restricted Mode: it runs the program in codetailor.serverCommand. " +
          "Click to manage workspace trust; trusting this folder turns completions on.",
        severity: "warning",
      };
    case "stopped":
      return {
        text: "$(debug-stop) Codetailor",
        tooltip: 'Codetailor: the server is not running. Run "Codetailor: Restart Server".',
        severity: "error",
      };
  }
}

/** The parts of `codetailor.status`'s answer the extension relies on. */
export interface ServerStatus {
  state?: string;
  error?: string | null;
  model?: string | null;
  adapter?: string | null;
  device?: string | null;
  dtype?: string | null;
  settings?: { enable?: boolean } & Record<string, unknown>;
  counts?: Record<string, number>;
  acceptanceRate?: number | null;
  cache?: Record<string, unknown> | null;
  [key: string]: unknown;
}

/** The status-bar state that a `codetailor.status` answer implies. */
export function stateFromStatus(status: ServerStatus): ServerState {
  if (status.state === "failed") return { kind: "error", message: status.error ?? "the model failed to load" };
  if (status.state === "loading" || status.state === "idle") return { kind: "loading" };
  if (status.settings?.enable === false)
    return { kind: "disabled", model: status.model, adapter: status.adapter };
  return { kind: "ready", model: status.model, adapter: status.adapter, device: status.device };
}

/** Human-readable lines for the output channel. */
export function formatStatus(status: ServerStatus): string[] {
  const lines = [
    `state:    ${status.state ?? "unknown"}${status.error ? ` (${status.error})` : ""}`,
    `model:    ${status.model ?? "-"}`,
    `adapter:  ${status.adapter ?? "-"}`,
    `device:   ${status.device ?? "-"}${status.dtype ? ` / ${status.dtype}` : ""}`,
  ];
  const counts = status.counts ?? {};
  const shown = counts.shown ?? 0;
  const accepted = counts.accepted ?? 0;
  const rate = shown ? ` (${Math.round((100 * accepted) / shown)}%)` : "";
  lines.push(`accepted: ${accepted} of ${shown} shown${rate}`);
  if (status.cache) lines.push(`cache:    ${JSON.stringify(status.cache)}`);
  return lines;
}
