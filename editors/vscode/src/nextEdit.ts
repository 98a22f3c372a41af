/**
 * Next-edit suggestions: after the user edits, ask the server for the edit they
 * will make next near the cursor (`textDocument/copilotInlineEdit`, as the Copilot
 * language server names it), show it, and let Tab jump to it and Tab again apply it.
 *
 * Stable API only: VS Code shows an inline item only on one line, at the cursor
 * (`isInlineEdit`/`showRange` are proposed API), so an edit on the cursor's line
 * that contains the cursor goes to the inline completion provider (ghost text) and
 * every other edit is drawn with decorations (nextEditView.ts). The cursor never
 * moves and no key is taken unless an edit is shown: Tab and Escape are bound only
 * while the `codetailor.nextEditVisible` context key is set.
 *
 * Pure: no `vscode` import (extension.ts and nextEditView.ts give it the editor),
 * so the logic is unit-tested with fake timers.
 */

import type { Timers } from "./cursor";

export const INLINE_EDIT_METHOD = "textDocument/copilotInlineEdit";
export const DID_SHOW_INLINE_EDIT = "textDocument/didShowInlineEdit";
/** Set while an edit is shown: the `when` of the Tab and Escape key bindings. */
export const VISIBLE_CONTEXT = "codetailor.nextEditVisible";
/** Cursor moves (not ours) after which a shown edit is hidden: the user went elsewhere. */
export const CLEAR_AFTER_MOVES = 3;

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface Command {
  title: string;
  command: string;
  arguments?: unknown[];
}

/** One edit as the server sends it: `range` of the document becomes `text`. */
export interface NextEdit {
  text: string;
  range: Range;
  textDocument: { uri: string; version: number };
  command?: Command;
}

export interface InlineEditParams {
  textDocument: { uri: string; version: number };
  position: Position;
}

const isPosition = (p: unknown): p is Position =>
  typeof p === "object" && p !== null && Number.isInteger((p as Position).line) && Number.isInteger((p as Position).character);

/**
 * The first edit of `result` meant for `version` of `uri`, or undefined: `{edits: []}`,
 * a malformed answer, or one for another version (the document changed since) shows nothing.
 */
export function pickEdit(result: unknown, uri: string, version: number): NextEdit | undefined {
  const edits = (result as { edits?: unknown } | null | undefined)?.edits;
  if (!Array.isArray(edits)) return undefined;
  for (const edit of edits as Partial<NextEdit>[]) {
    if (typeof edit?.text !== "string" || !isPosition(edit.range?.start) || !isPosition(edit.range?.end)) continue;
    if (edit.textDocument?.uri !== uri || edit.textDocument.version !== version) continue;
    return edit as NextEdit;
  }
  return undefined;
}

const before = (a: Position, b: Position) => a.line < b.line || (a.line === b.line && a.character <= b.character);

/**
 * Where `edit` is shown: `ghost` when it is on the cursor's line and contains the
 * cursor (the inline completion provider shows it, as the stable API allows),
 * else `decoration`.
 */
export function placement(edit: NextEdit, cursor: Position): "ghost" | "decoration" {
  const { start, end } = edit.range;
  const oneLine = start.line === end.line && !edit.text.includes("\n");
  return oneLine && start.line === cursor.line && before(start, cursor) && before(cursor, end) ? "ghost" : "decoration";
}

/** What Tab does: `apply` when the cursor is on the edit's lines, else `jump` there. */
export function tabAction(edit: NextEdit, cursor: Position): "jump" | "apply" {
  return cursor.line >= edit.range.start.line && cursor.line <= edit.range.end.line ? "apply" : "jump";
}

/** The new text as one line for an inline preview: line breaks as ⏎, long text cut with …. */
export function preview(text: string, max = 80): string {
  const one = text.replace(/\r?\n/g, " ⏎ ");
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

/** Whether the edit removes text (its range is not empty). */
export function removes(edit: NextEdit): boolean {
  const { start, end } = edit.range;
  return start.line !== end.line || start.character !== end.character;
}

/** Why a shown edit went untaken: the dismiss key, cursor moves elsewhere, another editor. */
export type DismissReason = "dismiss" | "cursor-moved" | "buffer-left";

/** The id the server gave the edit (its command's first argument), if any. */
export function editId(edit: NextEdit): string | undefined {
  const id = edit.command?.arguments?.[0];
  return typeof id === "string" ? id : undefined;
}

/** How a shown edit is drawn: in full, or only its gutter mark (`indicatorOnly`, until Tab jumps there). */
export type Look = "full" | "indicator";

/** What the controller needs from the editor and the server (extension.ts gives the real ones). */
export interface NextEditHost {
  /** The request for the active editor's cursor now, or undefined (no editor, not ours, no server). */
  params(): InlineEditParams | undefined;
  /** Ask the server; `signal` is aborted when a newer edit supersedes the request. */
  request(params: InlineEditParams, signal: AbortSignal): Promise<unknown>;
  /** The active editor's cursor. */
  cursor(): Position | undefined;
  /** Draw `edit` in the active editor. */
  show(edit: NextEdit, look: Look): void;
  /** Ask VS Code's inline completions again (the server offers this edit there too). */
  showGhost(edit: NextEdit): void;
  /** Remove what `show` drew. */
  hide(): void;
  /** Tell the server the edit was shown (`textDocument/didShowInlineEdit`). */
  didShow(edit: NextEdit): void;
  /** Put the cursor at `position` and reveal it. */
  moveCursor(position: Position): void;
  /** Apply `edit` to the document; false when it could not be applied. */
  apply(edit: NextEdit): Promise<boolean>;
  /** Run the edit's command on the server (it counts the acceptance). */
  accepted(command: Command): void;
  /** Tell the server the user hid the edit untaken (`codetailor/dismissed`, for the feedback log). */
  dismissed(id: string, reason: DismissReason): void;
  /** Set or clear the `codetailor.nextEditVisible` context key. */
  setVisible(visible: boolean): void;
}

export interface NextEditOptions {
  enabled: boolean;
  debounceMs: number;
  indicatorOnly: boolean;
}

const realTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Asks after edits (debounced, the older request aborted), shows one edit, and handles Tab and Escape. */
export class NextEditController {
  private pending: unknown;
  private inflight: AbortController | undefined;
  private generation = 0;
  private edit: NextEdit | undefined;
  private look: Look = "full";
  private moves = 0;
  /** Where Tab put the cursor: the move there is not the user's. */
  private jumpedTo: Position | undefined;

  constructor(
    private readonly host: NextEditHost,
    private readonly options: () => NextEditOptions,
    private readonly timers: Timers = realTimers,
  ) {}

  /** The edit on show, if any. */
  get shown(): NextEdit | undefined {
    return this.edit;
  }

  /** The user edited the active document: hide what is shown, ask again once edits pause. */
  changed(): void {
    this.clear();
    const { enabled, debounceMs } = this.options();
    if (!enabled) return;
    const generation = this.generation;
    this.pending = this.timers.set(() => {
      this.pending = undefined;
      if (generation === this.generation) void this.ask(generation);
    }, debounceMs);
  }

  /** The cursor moved to `to`: a few moves that are not ours hide the edit. */
  cursorMoved(to: Position): void {
    if (!this.edit) return;
    const jumped = this.jumpedTo;
    if (jumped && jumped.line === to.line && jumped.character === to.character) return;
    if (++this.moves >= CLEAR_AFTER_MOVES) this.clear("cursor-moved");
  }

  /** Tab: jump to the edit, show it in full, or apply it. False when none is shown. */
  async tab(): Promise<boolean> {
    const edit = this.edit;
    const cursor = this.host.cursor();
    if (!edit || !cursor) return false;
    if (tabAction(edit, cursor) === "jump") {
      this.jumpedTo = edit.range.start;
      this.host.moveCursor(edit.range.start);
      this.draw("full");
      return true;
    }
    if (this.look === "indicator") {
      this.draw("full"); // never apply what the user has not seen
      return true;
    }
    this.clear();
    if ((await this.host.apply(edit)) && edit.command) this.host.accepted(edit.command);
    return true;
  }

  /** Escape: hide the shown edit; false when none was shown. */
  dismiss(): boolean {
    const shown = this.edit !== undefined;
    this.clear("dismiss");
    return shown;
  }

  /**
   * Hide what is shown and forget pending requests (an edit, another editor, settings
   * off); `reason`: the user hid it untaken, which the server hears.
   */
  clear(reason?: DismissReason): void {
    const id = this.edit && reason ? editId(this.edit) : undefined;
    if (id && reason) this.host.dismissed(id, reason);
    this.generation++;
    if (this.pending !== undefined) this.timers.clear(this.pending);
    this.pending = undefined;
    this.inflight?.abort();
    this.inflight = undefined;
    if (this.edit) {
      this.edit = undefined;
      this.host.hide();
      this.host.setVisible(false);
    }
  }

  dispose(): void {
    this.clear();
  }

  private async ask(generation: number): Promise<void> {
    const params = this.host.params();
    if (!params) return;
    const inflight = new AbortController();
    this.inflight = inflight;
    let result: unknown;
    try {
      result = await this.host.request(params, inflight.signal);
    } catch {
      return; // aborted, or the server failed: nothing to show
    } finally {
      if (this.inflight === inflight) this.inflight = undefined;
    }
    if (generation !== this.generation) return; // an edit since: a newer request is on its way
    const edit = pickEdit(result, params.textDocument.uri, params.textDocument.version);
    const cursor = this.host.cursor();
    if (!edit || !cursor) return;
    if (placement(edit, cursor) === "ghost") {
      this.host.showGhost(edit);
      return;
    }
    this.edit = edit;
    this.moves = 0;
    this.jumpedTo = undefined;
    this.draw(this.options().indicatorOnly ? "indicator" : "full");
    this.host.setVisible(true);
    this.host.didShow(edit);
  }

  private draw(look: Look): void {
    if (!this.edit) return;
    this.look = look;
    this.host.show(this.edit, look);
  }
}
