/**
 * What the extension tells the user about failures, without repeating itself.
 *
 * Pure: no `vscode` import. One toast per failure: vscode-languageclient's own
 * toasts are turned off (client.ts), and a failure already shown is not shown
 * again until the server has recovered; on recovery the extension hides the
 * toasts still on screen. The server's log lines on stderr get a level from
 * their text instead of all being errors.
 */

/** The failures shown since the server last worked, by kind. */
export class FailureNotices {
  private readonly shown = new Set<string>();
  private open = 0;

  /** Whether to show a toast for a failure of this `kind` (e.g. "start", "crash"). */
  shouldShow(kind: string): boolean {
    if (this.shown.has(kind)) return false;
    this.shown.add(kind);
    return true;
  }

  /** Track a shown toast: `closed` settles when the user dismisses it or picks a button. */
  track(closed: PromiseLike<unknown>): void {
    this.open++;
    const done = () => {
      this.open--;
    };
    closed.then(done, done);
  }

  /** The server works again: forget the failures; true when toasts are still on screen to hide. */
  recovered(): boolean {
    this.shown.clear();
    return this.open > 0;
  }

  /** Whether a failure has been shown since the last recovery. */
  get failing(): boolean {
    return this.shown.size > 0;
  }
}

/** The command that opens the settings where `codetailor.serverCommand` applies. */
export function settingsCommand(remoteName: string | undefined): { command: string; label: string } {
  // In a remote window VS Code ignores machine-scoped values in the local User settings.
  return remoteName
    ? { command: "workbench.action.openRemoteSettings", label: "Remote settings" }
    : { command: "workbench.action.openSettings", label: "User settings" };
}

/** The error toast's text for a server that does not start. */
export function startFailureMessage(error: string, command: string, remoteName: string | undefined): string {
  const where = remoteName
    ? `set codetailor.serverCommand in the Remote settings (a remote window ignores it in the User settings)`
    : `set codetailor.serverCommand to the path of codetailor (e.g. .venv/bin/codetailor)`;
  const missing = /ENOENT/.test(error);
  return missing
    ? `Codetailor: cannot start the server: "${command}" was not found. ${capitalize(where)}.`
    : `Codetailor: cannot start the server (${command}): ${error}`;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export type LogLevel = "error" | "warn" | "info" | "debug";

/**
 * The level of one line the server wrote to stderr. The server logs through
 * `window/logMessage` once connected, so stderr holds what came before (or a
 * crash): Python's log lines carry their level; a traceback is an error; the
 * rest (a library's print) is information, not an error.
 */
export function stderrLevel(line: string): LogLevel {
  const m = /\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b/.exec(line);
  if (m) {
    return m[1] === "DEBUG" ? "debug" : m[1] === "INFO" ? "info" : m[1] === "WARNING" ? "warn" : "error";
  }
  if (/^(Traceback \(most recent call last\)|\s+File "|\w+(Error|Exception)\b|codetailor: error:)/.test(line)) return "error";
  return "info";
}
