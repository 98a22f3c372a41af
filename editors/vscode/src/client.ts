/**
 * The language client: starts `codetailor serve`, sends the settings, and
 * follows the server's model-loading `$/progress` for the status bar.
 */

import * as readline from "node:readline";
import type { Readable } from "node:stream";

import * as vscode from "vscode";
import {
  CloseAction,
  type CloseHandlerResult,
  ErrorAction,
  type ErrorHandlerResult,
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
import { stderrLevel } from "./notices";
import { initializationOptions, type Settings } from "./settings";

export const CLIENT_ID = "codetailor";
/** The documents the client serves: every file, saved or not. */
export const DOCUMENT_SELECTOR = [{ scheme: "file" }, { scheme: "untitled" }];

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
      let report: ((value: { message?: string }) => void) | undefined;
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
          // The stages, not a bar: loading reports no steps between "loading" and
          // "warming up", so a percentage would sit at 0% and then jump to 90%.
          report?.({ message: value.message });
        } else {
          finish?.();
          subscription.dispose();
        }
      });
    });
  }

  clear(): void {}
}

/**
 * A LanguageClient that logs its errors but never shows them as toasts: the
 * extension shows one toast per failure itself (extension.ts), instead of two
 * (ours and the client's "couldn't create connection to server").
 */
class CodetailorClient extends LanguageClient {
  override error(message: string, data?: unknown, _showNotification?: boolean | "force"): void {
    super.error(message, data, false);
  }
}

/** What the client does when the server process dies: restart it a few times, then tell us. */
export interface Lifecycle {
  /** The server died; `restarting` says whether the client starts a new one. */
  onCrash(restarting: boolean): void;
}

const MAX_RESTARTS = 4;
const RESTART_WINDOW_MS = 3 * 60 * 1000;

function errorHandler(lifecycle: Lifecycle) {
  const restarts: number[] = [];
  return {
    error: (_error: Error, _message: unknown, count: number | undefined): ErrorHandlerResult => ({
      action: count && count <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
      handled: true,
    }),
    closed: (): CloseHandlerResult => {
      const now = Date.now();
      restarts.push(now);
      while (restarts.length && now - restarts[0]! > RESTART_WINDOW_MS) restarts.shift();
      const restarting = restarts.length <= MAX_RESTARTS;
      lifecycle.onCrash(restarting);
      return { action: restarting ? CloseAction.Restart : CloseAction.DoNotRestart, handled: true };
    },
  };
}

/** The server's stderr, line by line, at the level each line says (not all as errors). */
function logStderr(input: Readable, output: vscode.LogOutputChannel): void {
  readline
    .createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 })
    .on("line", (line) => output[stderrLevel(line)](line));
}

/** A client for the current settings; call `start()` on it. */
export function createClient(
  settings: Settings,
  output: vscode.LogOutputChannel,
  onProgress: (value: ProgressValue) => void,
  lifecycle: Lifecycle,
): LanguageClient {
  const inv = serverInvocation(settings);
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const serverOptions: ServerOptions = {
    run: { command: inv.command, args: inv.args, options: cwd ? { cwd } : {} },
    debug: { command: inv.command, args: [...inv.args, "-v"], options: cwd ? { cwd } : {} },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: DOCUMENT_SELECTOR,
    initializationOptions: initializationOptions(settings),
    outputChannel: output,
    // The server shows its own problems (window/showMessage); the output channel
    // holds its log (window/logMessage), so it should not pop up on every line.
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    // A server that fails to initialize is stopped; extension.ts says so, once.
    initializationFailedHandler: () => false,
    errorHandler: errorHandler(lifecycle),
    stdioOptions: {
      stdout: (input, channel) => logStderr(input, channel),
      stderr: (input, channel) => logStderr(input, channel),
    },
  };
  const client = new CodetailorClient(CLIENT_ID, "Codetailor", serverOptions, clientOptions);
  client.registerFeature(new ProgressFeature(client, onProgress));
  return client;
}
