/**
 * The editor side of next edits (the logic is nextEdit.ts): decorations for an
 * edit away from the cursor — the removed text struck through, the new text after
 * it, a gutter mark — and the language-client calls behind `NextEditHost`.
 * Stable API only: decorations, `setContext`, commands.
 */

import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";

import { DOCUMENT_SELECTOR } from "./client";
import {
  DID_SHOW_INLINE_EDIT,
  INLINE_EDIT_METHOD,
  preview,
  removes,
  VISIBLE_CONTEXT,
  type Command,
  type DismissReason,
  type InlineEditParams,
  type Look,
  type NextEdit,
  type NextEditHost,
  type Position,
} from "./nextEdit";

const METHOD_NOT_FOUND = -32601;
/** The user hid a suggestion untaken (lsp_server/methods.py DISMISSED). */
const DISMISSED_NOTIFICATION = "codetailor/dismissed";

/** The three decoration types of a shown edit. */
class Decorations implements vscode.Disposable {
  readonly removed = vscode.window.createTextEditorDecorationType({
    textDecoration: "line-through",
    backgroundColor: new vscode.ThemeColor("diffEditor.removedTextBackground"),
  });
  readonly inserted = vscode.window.createTextEditorDecorationType({
    after: {
      backgroundColor: new vscode.ThemeColor("diffEditor.insertedTextBackground"),
      color: new vscode.ThemeColor("editor.foreground"),
      margin: "0 0 0 0.2em",
    },
  });
  readonly gutter: vscode.TextEditorDecorationType;

  constructor(context: vscode.ExtensionContext) {
    this.gutter = vscode.window.createTextEditorDecorationType({
      gutterIconPath: context.asAbsolutePath("media/next-edit.svg"),
      gutterIconSize: "contain",
      overviewRulerColor: new vscode.ThemeColor("editorOverviewRuler.addedForeground"),
      overviewRulerLane: vscode.OverviewRulerLane.Right,
    });
  }

  clear(editor: vscode.TextEditor): void {
    for (const type of [this.removed, this.inserted, this.gutter]) editor.setDecorations(type, []);
  }

  dispose(): void {
    for (const type of [this.removed, this.inserted, this.gutter]) type.dispose();
  }
}

/** A hover with the whole new text (the inline preview shows one line of it). */
function hover(edit: NextEdit): vscode.MarkdownString {
  const md = new vscode.MarkdownString("**Codetailor next edit** — Tab: jump there, Tab again: apply, Escape: dismiss\n\n");
  md.appendCodeblock(edit.text === "" ? "(delete)" : edit.text);
  return md;
}

/** `NextEditHost` over the active editor and the language client. */
export class NextEditView implements NextEditHost, vscode.Disposable {
  private readonly decorations: Decorations;
  private drawnIn: vscode.TextEditor | undefined;
  /** A server that answered "method not found" (an older one): not asked again. */
  private unsupported: LanguageClient | undefined;

  constructor(
    context: vscode.ExtensionContext,
    private readonly client: () => LanguageClient | undefined,
  ) {
    this.decorations = new Decorations(context);
  }

  /** The active editor, when it shows a document the server serves. */
  private editor(): vscode.TextEditor | undefined {
    const editor = vscode.window.activeTextEditor;
    return editor && vscode.languages.match(DOCUMENT_SELECTOR, editor.document) ? editor : undefined;
  }

  private running(): LanguageClient | undefined {
    const client = this.client();
    return client?.isRunning() && client !== this.unsupported ? client : undefined;
  }

  params(): InlineEditParams | undefined {
    const editor = this.editor();
    const client = this.running();
    if (!editor || !client) return undefined;
    const convert = client.code2ProtocolConverter;
    return {
      textDocument: { uri: convert.asUri(editor.document.uri), version: editor.document.version },
      position: convert.asPosition(editor.selection.active),
    };
  }

  async request(params: InlineEditParams, signal: AbortSignal): Promise<unknown> {
    const client = this.running();
    if (!client) return undefined;
    const source = new vscode.CancellationTokenSource();
    signal.addEventListener("abort", () => source.cancel());
    try {
      return await client.sendRequest(INLINE_EDIT_METHOD, params, source.token);
    } catch (error) {
      if ((error as { code?: unknown }).code === METHOD_NOT_FOUND) this.unsupported = client;
      throw error;
    } finally {
      source.dispose();
    }
  }

  cursor(): Position | undefined {
    const active = this.editor()?.selection.active;
    return active && { line: active.line, character: active.character };
  }

  /** The edit's range in `editor`; one that ends after the last newline ends at the document's end. */
  private range(edit: NextEdit, editor: vscode.TextEditor): vscode.Range | undefined {
    const range = this.running()?.protocol2CodeConverter.asRange(edit.range);
    return range && editor.document.validateRange(range);
  }

  show(edit: NextEdit, look: Look): void {
    const editor = this.editor();
    const range = editor && this.range(edit, editor);
    if (!editor || !range) return;
    if (this.drawnIn && this.drawnIn !== editor) this.decorations.clear(this.drawnIn);
    this.drawnIn = editor;
    const hoverMessage = hover(edit);
    const line = editor.document.lineAt(range.start.line).range;
    editor.setDecorations(this.decorations.gutter, [{ range: line, hoverMessage }]);
    const full = look === "full";
    editor.setDecorations(this.decorations.removed, full && removes(edit) ? [{ range, hoverMessage }] : []);
    const after = { contentText: preview(edit.text) };
    const inserted = full && edit.text !== "" ? [{ range: range.with({ start: range.end }), renderOptions: { after } }] : [];
    editor.setDecorations(this.decorations.inserted, inserted);
  }

  showGhost(): void {
    void vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
  }

  hide(): void {
    if (this.drawnIn) this.decorations.clear(this.drawnIn);
    this.drawnIn = undefined;
  }

  didShow(edit: NextEdit): void {
    void this.running()?.sendNotification(DID_SHOW_INLINE_EDIT, { item: edit });
  }

  moveCursor(position: Position): void {
    const editor = this.editor();
    if (!editor) return;
    const at = new vscode.Position(position.line, position.character);
    editor.selection = new vscode.Selection(at, at);
    editor.revealRange(new vscode.Range(at, at), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  }

  async apply(edit: NextEdit): Promise<boolean> {
    const editor = this.editor();
    const range = editor && this.range(edit, editor);
    if (!editor || !range || editor.document.version !== edit.textDocument.version) return false;
    return editor.edit((builder) => builder.replace(range, edit.text));
  }

  accepted(command: Command): void {
    void this.running()
      ?.sendRequest("workspace/executeCommand", { command: command.command, arguments: command.arguments ?? [] })
      .catch(() => undefined);
  }

  dismissed(id: string, reason: DismissReason): void {
    void this.running()?.sendNotification(DISMISSED_NOTIFICATION, { id, reason });
  }

  setVisible(visible: boolean): void {
    void vscode.commands.executeCommand("setContext", VISIBLE_CONTEXT, visible);
  }

  dispose(): void {
    this.hide();
    this.decorations.dispose();
  }
}
