/**
 * "Codetailor: Fine-tune on This Workspace": runs `codetailor finetune` with a
 * progress notification. With `codetailor.adapter` at `auto` the server picks up the
 * registered adapter by itself; otherwise the setting is pointed at the new adapter.
 */

import { spawn } from "node:child_process";
import * as path from "node:path";
import * as vscode from "vscode";

import { adapterFolderName, describe, finetuneInvocation } from "./command";
import { lastErrorLine, parseProgress, parseSummary } from "./progress";
import { effectiveValue, type Settings } from "./settings";

export async function finetuneWorkspace(
  context: vscode.ExtensionContext,
  settings: Settings,
  output: vscode.OutputChannel,
): Promise<void> {
  const folder =
    vscode.workspace.workspaceFolders?.length === 1
      ? vscode.workspace.workspaceFolders[0]
      : await vscode.window.showWorkspaceFolderPick({ placeHolder: "Fine-tune on which folder?" });
  if (!folder) {
    if (!vscode.workspace.workspaceFolders?.length) {
      void vscode.window.showErrorMessage("Codetailor: open a folder to fine-tune on it.");
    }
    return;
  }
  const outDir = path.join(
    context.globalStorageUri.fsPath,
    "adapters",
    adapterFolderName(folder.name, new Date()),
  );
  const inv = finetuneInvocation(settings, folder.uri.fsPath, outDir);
  output.appendLine(`[finetune] ${describe(inv)}`);

  const result = await vscode.window.withProgress(
    {
      location: vscode.ProgressLocation.Notification,
      title: `Codetailor: fine-tuning on ${folder.name}`,
      cancellable: true,
    },
    (progress, token) =>
      new Promise<{ code: number | null; stdout: string; stderr: string; error?: Error }>((resolve) => {
        const child = spawn(inv.command, inv.args, { cwd: folder.uri.fsPath });
        let stdout = "";
        let stderr = "";
        let shown = 0;
        token.onCancellationRequested(() => child.kill());
        child.stdout.on("data", (data: Buffer) => (stdout += data.toString()));
        child.stderr.on("data", (data: Buffer) => {
          const chunk = data.toString();
          stderr += chunk;
          const p = parseProgress(chunk);
          if (p) {
            progress.report({ message: p.message, increment: Math.max(0, p.percentage - shown) });
            shown = Math.max(shown, p.percentage);
          } else {
            output.append(chunk);
          }
        });
        child.on("error", (error) => resolve({ code: null, stdout, stderr, error }));
        child.on("close", (code) => resolve({ code, stdout, stderr }));
      }),
  );

  if (result.error || result.code !== 0) {
    const why = result.error
      ? `cannot run ${inv.command}: ${result.error.message}`
      : lastErrorLine(result.stderr) || `exit status ${result.code}`;
    output.appendLine(`[finetune] failed: ${why}`);
    const choice = await vscode.window.showErrorMessage(`Codetailor: fine-tuning failed: ${why}`, "Show Log");
    if (choice) output.show();
    return;
  }
  const summary = parseSummary(result.stdout);
  output.appendLine(`[finetune] done: ${JSON.stringify(summary ?? {})}`);
  const adapter = typeof summary?.out === "string" ? summary.out : outDir;
  const config = vscode.workspace.getConfiguration("codetailor");
  // `adapter` is machine-scoped: the user's value alone counts, and is the one to change.
  if ((effectiveValue("adapter", config.inspect("adapter")) ?? "auto") === "auto") {
    // finetune registered the adapter for this repository: the server swaps it in by itself,
    // and the setting stays `auto` so the next fine-tune is picked up too.
    void vscode.window.showInformationMessage(`Codetailor: the server switches to the adapter fine-tuned on ${folder.name} (${adapter}).`);
    return;
  }
  await config.update("adapter", adapter, vscode.ConfigurationTarget.Global);
  void vscode.window.showInformationMessage(`Codetailor: now using the adapter fine-tuned on ${folder.name} (${adapter}).`);
}
