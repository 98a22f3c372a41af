/**
 * Codetailor for VS Code: inline completions from `codetailor serve`.
 *
 * Wires the pieces together: the language client (client.ts), settings
 * (settings.ts), the status-bar item (status.ts) and the commands.
 */

import * as vscode from "vscode";
import { DidChangeConfigurationNotification, State, type LanguageClient } from "vscode-languageclient/node";

import { createClient, type ProgressValue } from "./client";
import { describe, serverInvocation } from "./command";
import { finetuneWorkspace } from "./finetune";
import { needsRestart, readSettings, toServerSettings, type Settings } from "./settings";
import { formatStatus, stateFromStatus, statusView, type ServerState, type ServerStatus } from "./status";

const STATUS_COMMAND = "codetailor.status";

class Extension implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private settings: Settings;
  private readonly output = vscode.window.createOutputChannel("Codetailor", { log: true });
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private readonly disposables: vscode.Disposable[] = [this.output, this.item];

  constructor(private readonly context: vscode.ExtensionContext) {
    this.settings = this.read();
    this.item.command = "codetailor.showStatus";
    this.item.show();
  }

  private read(): Settings {
    const problems: string[] = [];
    const config = vscode.workspace.getConfiguration("codetailor");
    const settings = readSettings((key) => config.get(key), problems);
    for (const problem of problems) this.output.appendLine(`[settings] ${problem}`);
    return settings;
  }

  show(state: ServerState): void {
    const view = statusView(state);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor =
      view.severity === "normal" ? undefined : new vscode.ThemeColor(`statusBarItem.${view.severity}Background`);
  }

  async start(): Promise<void> {
    this.show({ kind: "starting" });
    const client = createClient(this.settings, this.output, (value) => this.onProgress(value));
    this.client = client;
    client.onDidChangeState(({ newState }) => {
      if (this.client !== client) return;
      if (newState === State.Stopped) this.show({ kind: "stopped" });
      // The client restarts a crashed server by itself; show how the new one is.
      if (newState === State.Running) void this.refresh();
    });
    this.output.appendLine(`[client] starting ${describe(serverInvocation(this.settings))}`);
    try {
      await client.start();
    } catch (error) {
      const message = `cannot start the server (${describe(serverInvocation(this.settings))}): ${String(error)}`;
      this.show({ kind: "error", message });
      this.output.appendLine(`[client] ${message}`);
      const choice = await vscode.window.showErrorMessage(`Codetailor: ${message}`, "Open Settings", "Show Log");
      if (choice === "Open Settings") void vscode.commands.executeCommand("workbench.action.openSettings", "codetailor.server");
      if (choice === "Show Log") this.output.show();
      return;
    }
    await this.refresh();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        await client.stop();
      } catch (error) {
        this.output.appendLine(`[client] stopping: ${String(error)}`);
      }
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
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
      this.output.appendLine(`[client] ${STATUS_COMMAND} failed: ${String(error)}`);
      return undefined;
    }
  }

  async showStatus(): Promise<void> {
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
  async onConfigurationChanged(): Promise<void> {
    const previous = this.settings;
    this.settings = this.read();
    if (needsRestart(previous, this.settings)) {
      await this.restart();
      return;
    }
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
    this.disposables.push(
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration("codetailor")) void this.onConfigurationChanged();
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
  await extension.start();
}

export async function deactivate(): Promise<void> {
  await extension?.stop();
  extension = undefined;
}
