/**
 * The language client: starts `codetailor serve`, sends the settings, and
 * follows the server's model-loading `$/progress` for the status bar.
 */

import * as vscode from "vscode";
import {
  LanguageClient,
  type LanguageClientOptions,
  RevealOutputChannelOn,
  type ServerOptions,
  type StaticFeature,
  type FeatureState,
  WorkDoneProgress,
  WorkDoneProgressCreateRequest,
  type WorkDoneProgressBegin,
  type WorkDoneProgressReport,
  type WorkDoneProgressEnd,
} from "vscode-languageclient/node";

import { serverInvocation } from "./command";
import { initializationOptions, type Settings } from "./settings";

export const CLIENT_ID = "codetailor";

export type ProgressValue = WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd;

/**
 * Takes over `window/workDoneProgress/create` (after the client's own feature
 * registered it) so every progress the server reports reaches `onProgress`
 * and is also shown in the window's progress area.
 */
class ProgressFeature implements StaticFeature {
  constructor(
    private readonly client: LanguageClient,
    private readonly onProgress: (value: ProgressValue) => void,
  ) {}

  fillClientCapabilities(capabilities: { window?: { workDoneProgress?: boolean } }): void {
    capabilities.window = { ...(capabilities.window ?? {}), workDoneProgress: true };
  }

  getState(): FeatureState {
    return { kind: "static" };
  }

  initialize(): void {
    this.client.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
      let finish: (() => void) | undefined;
      let shown = 0;
      let report: ((value: { message?: string; increment?: number }) => void) | undefined;
      const subscription = this.client.onProgress(WorkDoneProgress.type, token, (value) => {
        this.onProgress(value);
        if (value.kind === "begin") {
          void vscode.window.withProgress(
            { location: vscode.ProgressLocation.Window, title: value.title },
            (progress) =>
              new Promise<void>((resolve) => {
                finish = resolve;
                report = (v) => progress.report(v);
                report({ message: value.message });
              }),
          );
        } else if (value.kind === "report") {
          const increment = value.percentage !== undefined ? Math.max(0, value.percentage - shown) : undefined;
          if (value.percentage !== undefined) shown = value.percentage;
          report?.({ message: value.message, increment });
        } else {
          finish?.();
          subscription.dispose();
        }
      });
    });
  }

  clear(): void {}
}

/** A client for the current settings; call `start()` on it. */
export function createClient(
  settings: Settings,
  output: vscode.LogOutputChannel,
  onProgress: (value: ProgressValue) => void,
): LanguageClient {
  const inv = serverInvocation(settings);
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const serverOptions: ServerOptions = {
    run: { command: inv.command, args: inv.args, options: cwd ? { cwd } : {} },
    debug: { command: inv.command, args: [...inv.args, "-v"], options: cwd ? { cwd } : {} },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    initializationOptions: initializationOptions(settings),
    outputChannel: output,
    // The server shows its own problems (window/showMessage); the output channel
    // holds its log (stderr), so it should not pop up on every line.
    revealOutputChannelOn: RevealOutputChannelOn.Never,
  };
  const client = new LanguageClient(CLIENT_ID, "Codetailor", serverOptions, clientOptions);
  client.registerFeature(new ProgressFeature(client, onProgress));
  return client;
}
