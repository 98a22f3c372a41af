/**
 * Codetailor for VS Code: inline completions from `codetailor serve`.
 *
 * Wires the pieces together: the language client (client.ts), settings
 * (settings.ts), the status-bar item (status.ts), the cursor reports
 * (cursor.ts), next-edit suggestions (nextEdit.ts, nextEditView.ts) and the commands.
 */

import * as vscode from "vscode";
import { DidChangeConfigurationNotification, State, type LanguageClient } from "vscode-languageclient/node";

import { createClient, DOCUMENT_SELECTOR, type ProgressValue } from "./client";
import { describe, serverInvocation } from "./command";
import { CURSOR_NOTIFICATION, CursorReporter, type CursorParams } from "./cursor";
import { finetuneWorkspace } from "./finetune";
import { NextEditController } from "./nextEdit";
import { NextEditView } from "./nextEditView";
import { FailureNotices, settingsCommand, startFailureMessage } from "./notices";
import {
  afterChange,
  effectiveValue,
  readSettings,
  RESTART_KEYS,
  restartChanges,
  settingChanges,
  settingSource,
  toServerSettings,
  type Settings,
} from "./settings";
import { formatStatus, stateFromStatus, statusView, type ServerState, type ServerStatus } from "./status";

const STATUS_COMMAND = "codetailor.status";

class Extension implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private settings: Settings;
  private readonly output = vscode.window.createOutputChannel("Codetailor", { log: true });
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private readonly disposables: vscode.Disposable[] = [this.output, this.item];
  private readonly notices = new FailureNotices();
  private readonly cursor = new CursorReporter((params) => {
    if (!this.client) throw new Error("no client");
    return this.client.sendNotification(CURSOR_NOTIFICATION, params);
  });

  private readonly nextEditView: NextEditView;
  private readonly nextEdit: NextEditController;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.settings = this.read();
    this.nextEditView = new NextEditView(context, () => this.client);
    this.nextEdit = new NextEditController(this.nextEditView, () => ({
      enabled: this.settings.enable && this.settings.nextEdit,
      debounceMs: this.settings.nextEditDebounceMs,
      indicatorOnly: this.settings.nextEditIndicatorOnly,
    }));
    this.disposables.push(this.nextEdit, this.nextEditView);
    this.item.command = "codetailor.showStatus";
    this.item.show();
  }

  /** The settings as VS Code applies them (machine-scoped ones from the Remote settings in a remote window). */
  private read(): Settings {
    const problems: string[] = [];
    const config = vscode.workspace.getConfiguration("codetailor");
    const settings = readSettings((key) => effectiveValue(key, config.inspect(key)), problems);
    for (const problem of problems) this.output.warn(`[settings] ${problem}`);
    return settings;
  }

  /** One log line per server-command setting: its value and the settings it comes from. */
  private logServerSettings(): void {
    const config = vscode.workspace.getConfiguration("codetailor");
    for (const key of RESTART_KEYS) {
      if (key === "authToken") continue;
      const source = settingSource(key, config.inspect(key), vscode.env.remoteName);
      this.output.info(`[settings] codetailor.${key} = ${JSON.stringify(this.settings[key])} (${source})`);
    }
  }

  /** Show an error toast for a failure of `kind`, unless this failure was already shown. */
  private async fail(kind: string, message: string, ...actions: string[]): Promise<string | undefined> {
    this.output.error(`[client] ${message}`);
    if (!this.notices.shouldShow(kind)) return undefined;
    const shown = vscode.window.showErrorMessage(message, ...actions);
    this.notices.track(shown);
    return shown;
  }

  /** The server works (again): forget the failures and hide their toasts still on screen. */
  private recovered(): void {
    if (!this.notices.failing) return;
    if (this.notices.recovered()) void vscode.commands.executeCommand("notifications.hideToasts");
    this.output.info("[client] the server works again");
  }

  private async openSettings(): Promise<void> {
    const { command } = settingsCommand(vscode.env.remoteName);
    try {
      await vscode.commands.executeCommand(command, "codetailor.server");
    } catch {
      await vscode.commands.executeCommand(command);
    }
  }

  show(state: ServerState): void {
    const view = statusView(state);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor =
      view.severity === "normal" ? undefined : new vscode.ThemeColor(`statusBarItem.${view.severity}Background`);
  }

  async start(): Promise<void> {
    if (!vscode.workspace.isTrusted) {
      this.show({ kind: "untrusted" });
      return;
    }
    this.show({ kind: "starting" });
    const client = createClient(this.settings, this.output, (value) => this.onProgress(value), {
      onCrash: (restarting) => {
        if (this.client !== client) return;
        if (!restarting) {
          this.show({ kind: "stopped" });
          void this.fail("crash", "Codetailor: the server keeps stopping; see its log.", "Show Log", "Restart Server").then(
            (choice) => this.onChoice(choice),
          );
        }
      },
    });
    this.client = client;
    client.onDidChangeState(({ newState }) => {
      if (this.client !== client) return;
      if (newState === State.Stopped) this.show({ kind: "stopped" });
      // The client restarts a crashed server by itself; show how the new one is.
      if (newState === State.Running) {
        this.recovered();
        void this.refresh();
        this.cursor.reset();
        if (vscode.window.activeTextEditor) this.cursorMoved(vscode.window.activeTextEditor);
      }
    });
    const command = describe(serverInvocation(this.settings));
    this.logServerSettings();
    this.output.info(`[client] starting ${command}`);
    try {
      await client.start();
    } catch (error) {
      if (this.client !== client) return; // stopped or replaced meanwhile
      const text = error instanceof Error ? error.message : String(error);
      const message = startFailureMessage(text, this.settings.serverCommand, vscode.env.remoteName);
      this.show({ kind: "error", message: `cannot start the server (${command}): ${text}` });
      const choice = await this.fail("start", message, "Open Settings", "Show Log");
      await this.onChoice(choice);
      return;
    }
    this.recovered();
    await this.refresh();
  }

  private async onChoice(choice: string | undefined): Promise<void> {
    if (choice === "Open Settings") await this.openSettings();
    if (choice === "Show Log") this.output.show();
    if (choice === "Restart Server") await this.restart();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        await client.stop();
      } catch (error) {
        this.output.warn(`[client] stopping: ${String(error)}`);
      }
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** The cursor moved in `editor`, or it became active: report where it rests, if ours. */
  private cursorMoved(editor: vscode.TextEditor): void {
    if (!vscode.languages.match(DOCUMENT_SELECTOR, editor.document)) return;
    this.cursor.moved(() => this.cursorParams(editor));
  }

  /** Where the cursor rests in `editor`, if it is still the active one and the server runs. */
  private cursorParams(editor: vscode.TextEditor): CursorParams | undefined {
    const client = this.client;
    if (!client?.isRunning() || vscode.window.activeTextEditor !== editor || editor.document.isClosed) return undefined;
    const convert = client.code2ProtocolConverter;
    return {
      textDocument: { uri: convert.asUri(editor.document.uri) },
      position: convert.asPosition(editor.selection.active),
    };
  }

  private onProgress(value: ProgressValue): void {
    if (value.kind === "end") {
      void this.refresh();
    } else {
      this.show({ kind: "loading", message: value.message, percentage: value.percentage });
    }
  }

  /** Ask the server how it is and show it in the status bar. */
  async refresh(): Promise<ServerStatus | undefined> {
    const status = await this.status();
    if (status) this.show(stateFromStatus(status));
    return status;
  }

  private async status(): Promise<ServerStatus | undefined> {
    const client = this.client;
    if (!client?.isRunning()) return undefined;
    try {
      return (await client.sendRequest("workspace/executeCommand", { command: STATUS_COMMAND, arguments: [] })) as ServerStatus;
    } catch (error) {
      this.output.warn(`[client] ${STATUS_COMMAND} failed: ${String(error)}`);
      return undefined;
    }
  }

  async showStatus(): Promise<void> {
    if (!vscode.workspace.isTrusted) {
      await vscode.commands.executeCommand("workbench.trust.manage");
      return;
    }
    const status = await this.status();
    if (!status) {
      const choice = await vscode.window.showWarningMessage("Codetailor: the server is not running.", "Restart Server", "Show Log");
      if (choice === "Restart Server") await this.restart();
      if (choice === "Show Log") this.output.show();
      return;
    }
    this.show(stateFromStatus(status));
    this.output.appendLine("[status]");
    for (const line of formatStatus(status)) this.output.appendLine(`  ${line}`);
    this.output.appendLine(JSON.stringify(status, null, 2));
    const summary = formatStatus(status).slice(0, 2).map((l) => l.replace(/\s+/g, " ")).join("; ");
    const choice = await vscode.window.showInformationMessage(`Codetailor: ${summary}`, "Show Details");
    if (choice) this.output.show();
  }

  async toggle(): Promise<void> {
    const config = vscode.workspace.getConfiguration("codetailor");
    // Change the value where it is set, so a workspace setting does not mask the change.
    const target =
      config.inspect("enable")?.workspaceValue !== undefined
        ? vscode.ConfigurationTarget.Workspace
        : vscode.ConfigurationTarget.Global;
    await config.update("enable", !this.settings.enable, target);
  }

  /** Settings changed: new server process, or just new settings for the running one. */
  async onConfigurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    const previous = this.settings;
    this.settings = afterChange(previous, this.read(), (key) => event.affectsConfiguration(`codetailor.${key}`));
    const changes = restartChanges(previous, this.settings);
    if (changes.length) {
      for (const c of changes) this.output.info(`[settings] codetailor.${c.key} changed: ${c.from} -> ${c.to}; restarting the server`);
      await this.restart();
      return;
    }
    for (const c of settingChanges(previous, this.settings)) this.output.info(`[settings] codetailor.${c.key}: ${c.from} -> ${c.to}`);
    if (!this.settings.enable || !this.settings.nextEdit) this.nextEdit.clear();
    const client = this.client;
    if (client?.isRunning()) {
      await client.sendNotification(DidChangeConfigurationNotification.type, {
        settings: toServerSettings(this.settings),
      });
      await this.refresh();
    }
  }

  register(): void {
    const command = (id: string, fn: () => unknown) =>
      this.disposables.push(vscode.commands.registerCommand(id, fn));
    command("codetailor.toggle", () => this.toggle());
    command("codetailor.restartServer", () => this.restart());
    command("codetailor.showStatus", () => this.showStatus());
    command("codetailor.showLog", () => this.output.show());
    command("codetailor.finetuneWorkspace", () => finetuneWorkspace(this.context, this.settings, this.output));
    // VS Code accepts part of an inline suggestion itself; these give the actions
    // Codetailor names and keys (see package.json's keybindings).
    command("codetailor.acceptNextWord", () => vscode.commands.executeCommand("editor.action.inlineSuggest.acceptNextWord"));
    command("codetailor.acceptNextLine", () => vscode.commands.executeCommand("editor.action.inlineSuggest.acceptNextLine"));
    command("codetailor.nextEdit.tab", async () => {
      // Bound to Tab only while an edit is shown; should it be gone meanwhile, Tab is a Tab.
      if (!(await this.nextEdit.tab())) await vscode.commands.executeCommand("tab");
    });
    command("codetailor.nextEdit.dismiss", () => this.nextEdit.dismiss());
    this.registerNextEditEvents();
    this.disposables.push(
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration("codetailor")) void this.onConfigurationChanged(e);
      }),
      vscode.workspace.onDidGrantWorkspaceTrust(() => void this.start()),
      // Where the cursor rests, so the server warms the window there (cursor.ts).
      vscode.window.onDidChangeActiveTextEditor((editor) => editor && this.cursorMoved(editor)),
      vscode.window.onDidChangeTextEditorSelection((event) => this.cursorMoved(event.textEditor)),
      this.cursor,
    );
  }

  /** Next edits follow the user's edits in the active editor and its cursor. */
  private registerNextEditEvents(): void {
    this.disposables.push(
      vscode.workspace.onDidChangeTextDocument((event) => {
        const editor = vscode.window.activeTextEditor;
        if (event.contentChanges.length === 0 || editor?.document !== event.document) return;
        if (vscode.languages.match(DOCUMENT_SELECTOR, event.document)) this.nextEdit.changed();
      }),
      vscode.window.onDidChangeActiveTextEditor(() => this.nextEdit.clear("buffer-left")),
      vscode.window.onDidChangeTextEditorSelection((event) => {
        if (event.textEditor !== vscode.window.activeTextEditor) return;
        const { line, character } = event.selections[0]?.active ?? event.textEditor.selection.active;
        this.nextEdit.cursorMoved({ line, character });
      }),
    );
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}

let extension: Extension | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  extension = new Extension(context);
  context.subscriptions.push(extension);
  extension.register();
  if (!vscode.workspace.isTrusted) {
    // package.json: "untrustedWorkspaces": "limited": active, but no server until trusted.
    void vscode.window
      .showInformationMessage(
        "Codetailor is off in Restricted Mode: it would run the program in codetailor.serverCommand. Trust this folder to get completions.",
        "Manage Workspace Trust",
      )
      .then((choice) => choice && vscode.commands.executeCommand("workbench.trust.manage"));
  }
  await extension.start();
}

export async function deactivate(): Promise<void> {
  await extension?.stop();
  extension = undefined;
}
