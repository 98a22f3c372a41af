/**
 * Where the cursor rests, told to the server (`codetailor/cursor`), so that it can
 * prefill the prompt window there before the first request, as llama.vim warms
 * its cache on entering a buffer. Without it the server only sees opens and edits,
 * and the first request at a new place in a file starts from a cold cache.
 *
 * The server decides whether the window is new; this only reports, debounced, and
 * once per line: the window moves in steps of whole lines. Pure: no `vscode`
 * import (extension.ts feeds it the editor's events).
 */

export const CURSOR_NOTIFICATION = "codetailor/cursor";
/** How long the cursor must rest before it is reported (the Neovim plugin waits as long). */
export const CURSOR_DELAY_MS = 150;

export interface CursorParams {
  textDocument: { uri: string };
  position: { line: number; character: number };
}

export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Reports the cursor once it has rested `delayMs`; each move restarts the wait. */
export class CursorReporter {
  private pending: unknown;
  private last: string | undefined;

  /**
   * @param send sends the notification; it may throw or reject (a client that is not
   *   running), which is ignored: the next move reports again.
   */
  constructor(
    private readonly send: (params: CursorParams) => unknown,
    private readonly delayMs: number = CURSOR_DELAY_MS,
    private readonly timers: Timers = realTimers,
  ) {}

  /**
   * The cursor moved (or another editor became active). `where` is asked once the
   * cursor has rested: the position then, or undefined where nothing is to be
   * reported (a document the client does not serve, a client that is not running).
   */
  moved(where: () => CursorParams | undefined): void {
    if (this.pending !== undefined) this.timers.clear(this.pending);
    this.pending = this.timers.set(() => {
      this.pending = undefined;
      this.report(where);
    }, this.delayMs);
  }

  /** A new server: it knows no cursor yet, so the next report goes out even on the same line. */
  reset(): void {
    this.last = undefined;
  }

  dispose(): void {
    if (this.pending !== undefined) this.timers.clear(this.pending);
    this.pending = undefined;
  }

  private report(where: () => CursorParams | undefined): void {
    let params: CursorParams | undefined;
    try {
      params = where();
    } catch {
      return;
    }
    if (!params) return;
    const key = `${params.position.line}:${params.textDocument.uri}`;
    if (key === this.last) return;
    let sent: unknown;
    try {
      sent = this.send(params);
    } catch {
      return; // not sent: the same line may be reported again
    }
    this.last = key;
    if (sent instanceof Promise) {
      sent.catch(() => {
        if (this.last === key) this.last = undefined;
      });
    }
  }
}
