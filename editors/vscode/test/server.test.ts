/**
 * The extension's wire format against the real server: what `initializationOptions`
 * and `didChangeConfiguration` carry, progress, `codetailor.status`, and inline
 * completion items with their `codetailor.accepted` command.
 *
 * Runs only when CODETAILOR_TEST_SERVER holds a server command as a JSON array, e.g.
 *   CODETAILOR_TEST_SERVER='["python", "-m", "lsp_server.cli", "serve", "--model", "/tmp/tiny"]'
 * (from the repository root; tests/e2e drive Neovim the same way).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  createMessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
} from "vscode-languageserver-protocol/node";

import { CURSOR_NOTIFICATION, type CursorParams } from "../src/cursor";
import { initializationOptions, readSettings, toServerSettings } from "../src/settings";
import { stateFromStatus, statusView, type ServerStatus } from "../src/status";

const SERVER = process.env.CODETAILOR_TEST_SERVER;

test("the real server takes the extension's settings", { skip: !SERVER && "set CODETAILOR_TEST_SERVER to run it", timeout: 180_000 }, async () => {
  const [command, ...args] = JSON.parse(SERVER!) as string[];
  const child = spawn(command!, args, { stdio: ["pipe", "pipe", "inherit"], cwd: process.env.CODETAILOR_TEST_CWD });
  const connection = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  const messages: string[] = [];
  const progress: string[] = [];
  connection.onNotification("window/showMessage", (p: any) => {
    messages.push(String(p.message));
  });
  connection.onRequest("window/workDoneProgress/create", () => null);
  connection.onNotification("$/progress", (p: any) => {
    progress.push(String(p.value.kind));
  });
  connection.listen();
  try {
    const settings = readSettings((key) => ({ maxTokens: 8, multiline: "never", timeBudgetMs: 5000 })[key]);
    const init = (await connection.sendRequest("initialize", {
      processId: process.pid,
      rootUri: null,
      capabilities: { window: { workDoneProgress: true } },
      initializationOptions: initializationOptions(settings),
    })) as { capabilities: Record<string, any> };
    assert.ok(init.capabilities.inlineCompletionProvider, "inline completion is offered");
    assert.ok(init.capabilities.completionProvider, "completion is offered");
    const commands: string[] = init.capabilities.executeCommandProvider?.commands ?? [];
    assert.ok(commands.includes("codetailor.accepted") && commands.includes("codetailor.status"), String(commands));
    await connection.sendNotification("initialized", {});

    const status = async () =>
      (await connection.sendRequest("workspace/executeCommand", { command: "codetailor.status", arguments: [] })) as ServerStatus;
    let current = await status();
    for (let i = 0; i < 600 && current.state !== "ready"; i++) {
      assert.notEqual(current.state, "failed", String(current.error));
      await new Promise((r) => setTimeout(r, 100));
      current = await status();
    }
    assert.equal(current.state, "ready");
    assert.equal(statusView(stateFromStatus(current)).severity, "normal");
    assert.equal((current.settings as Record<string, unknown>).maxTokens, 8);
    assert.equal((current.settings as Record<string, unknown>).multiline, "never");
    for (let i = 0; i < 50 && !progress.includes("end"); i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual([progress[0], progress[progress.length - 1]], ["begin", "end"]);

    const uri = "file:///tmp/add.py";
    await connection.sendNotification("textDocument/didOpen", {
      textDocument: { uri, languageId: "python", version: 1, text: "def add(a, b):\n    re\n" },
    });
    // Where the cursor rests (cursor.ts): the server counts the report, in order with the status request.
    const cursor: CursorParams = { textDocument: { uri }, position: { line: 1, character: 6 } };
    await connection.sendNotification(CURSOR_NOTIFICATION, cursor);
    assert.equal(((await status()) as unknown as { ahead: { cursors: number } }).ahead.cursors, 1);
    const list = (await connection.sendRequest("textDocument/inlineCompletion", {
      textDocument: { uri },
      position: { line: 1, character: 6 },
      context: { triggerKind: 2 },
    })) as { items: { insertText: string; range?: { start: { line: number; character: number } }; command?: { command: string } }[] };
    for (const item of list.items) {
      assert.equal(item.command?.command, "codetailor.accepted");
      // VS Code drops an item mid-word unless it says what it replaces: here "re".
      assert.deepEqual(item.range?.start, { line: 1, character: 4 });
      assert.ok(item.insertText.startsWith("re"), item.insertText);
    }

    await connection.sendNotification("workspace/didChangeConfiguration", {
      settings: toServerSettings({ ...settings, enable: false }),
    });
    current = await status();
    assert.equal(stateFromStatus(current).kind, "disabled");
    assert.deepEqual(messages, [], "no setting was refused");
    await connection.sendRequest("shutdown");
    await connection.sendNotification("exit");
  } finally {
    connection.dispose();
    child.kill();
  }
});
