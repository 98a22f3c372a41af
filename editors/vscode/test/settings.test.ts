/** Settings → initializationOptions and didChangeConfiguration. */
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  afterChange,
  DEFAULTS,
  effectiveValue,
  initializationOptions,
  needsRestart,
  readSettings,
  restartChanges,
  settingSource,
  toServerSettings,
} from "../src/settings";

const getter = (values: Record<string, unknown>) => (key: string) => values[key];

test("unset settings are the defaults, and go to the server in camelCase", () => {
  const s = readSettings(getter({}));
  assert.deepEqual(s, { ...DEFAULTS, serverArgs: ["serve"] });
  assert.deepEqual(initializationOptions(s), {
    model: null,
    adapter: "auto",
    device: "auto",
    dtype: "auto",
    maxTokens: 64,
    multiline: "auto",
    timeBudgetMs: 2000,
    firstTokenTimeoutMs: 8000,
    enable: true,
    promptFormat: null,
    context: true,
    engine: "local",
    feedback: true,
    quietness: 25,
    nextEdit: true,
    nextEditDebounceMs: 300,
    nextEditWindowLines: 10,
    nextEditFormat: null,
    drawsNextEdits: true,
  });
});

test("values map one to one; empty strings become null (the server's default)", () => {
  const s = readSettings(
    getter({
      model: " Qwen/Qwen2.5-Coder-1.5B ",
      adapter: "/tmp/adapter",
      device: "cuda:1",
      dtype: "bfloat16",
      maxTokens: 128,
      multiline: "never",
      timeBudgetMs: 500,
      firstTokenTimeoutMs: 30000,
      enable: false,
      promptFormat: "",
      context: false,
      engine: "openai:http://gpu-box:8000",
      feedback: false,
      quietness: 120,
      nextEdit: false,
      nextEditDebounceMs: 50_000,
      nextEditWindowLines: 5,
      nextEditIndicatorOnly: true,
    }),
  );
  assert.equal(s.nextEditIndicatorOnly, true); // the extension's own: not sent
  assert.deepEqual(toServerSettings(s), {
    model: "Qwen/Qwen2.5-Coder-1.5B",
    adapter: "/tmp/adapter",
    device: "cuda:1",
    dtype: "bfloat16",
    maxTokens: 128,
    multiline: "never",
    timeBudgetMs: 500,
    firstTokenTimeoutMs: 30000,
    enable: false,
    promptFormat: null,
    context: false,
    engine: "openai:http://gpu-box:8000",
    feedback: false,
    quietness: 95, // clamped to what the server accepts
    nextEdit: false,
    nextEditDebounceMs: 10_000, // clamped to what the server accepts
    nextEditWindowLines: 5,
    nextEditFormat: null,
  });
});

test("the auth token goes in initializationOptions only when set", () => {
  assert.equal("authToken" in initializationOptions(readSettings(getter({}))), false);
  const options = initializationOptions(readSettings(getter({ authToken: "s3cret" })));
  assert.equal(options.authToken, "s3cret");
  assert.equal("authToken" in toServerSettings(readSettings(getter({ authToken: "s3cret" }))), false);
});

test("initializationOptions say the extension draws next edits itself; not a setting", () => {
  assert.equal(initializationOptions(readSettings(getter({}))).drawsNextEdits, true);
  assert.equal("drawsNextEdits" in toServerSettings(readSettings(getter({}))), false);
});

test("wrong types fall back to the default and are reported; numbers are clamped", () => {
  const problems: string[] = [];
  const s = readSettings(getter({ maxTokens: "many", multiline: "sometimes", enable: 1, timeBudgetMs: 10 }), problems);
  assert.equal(s.maxTokens, 64);
  assert.equal(s.multiline, "auto");
  assert.equal(s.enable, true);
  assert.equal(s.timeBudgetMs, 50);
  assert.equal(problems.length, 3);
  assert.match(problems[0]!, /codetailor\.maxTokens: "many" is invalid/);
  assert.equal(readSettings(getter({ maxTokens: 1e9 })).maxTokens, 1024);
});

test("only the server's command line needs a new process", () => {
  const a = readSettings(getter({}));
  assert.equal(needsRestart(a, readSettings(getter({ model: "x", enable: false }))), false);
  assert.equal(needsRestart(a, readSettings(getter({ serverArgs: ["serve", "-v"] }))), true);
  assert.equal(needsRestart(a, readSettings(getter({ serverCommand: "/opt/ct" }))), true);
});

test("machine-scoped settings apply from the user (or Remote) settings only, others from the most specific scope", () => {
  const inspected = { defaultValue: "codetailor", globalValue: "/opt/ct", workspaceValue: "/ws/ct", workspaceFolderValue: "/f/ct" };
  assert.equal(effectiveValue("serverCommand", inspected), "/opt/ct");
  assert.equal(effectiveValue("serverCommand", { defaultValue: "codetailor", workspaceValue: "/ws/ct" }), "codetailor");
  assert.equal(effectiveValue("promptFormat", { ...inspected, defaultValue: "" }), "/f/ct");
  assert.equal(effectiveValue("promptFormat", { defaultValue: "", workspaceValue: "m" }), "m");
  assert.equal(effectiveValue("model", undefined), undefined);
  // through readSettings, as the extension reads them
  const s = readSettings((key) => effectiveValue(key, key === "serverArgs" ? { defaultValue: ["serve"], workspaceValue: ["x"] } : undefined));
  assert.deepEqual(s.serverArgs, ["serve"]);
});

test("the log names where a value comes from: Remote settings in a remote window", () => {
  assert.equal(settingSource("serverCommand", { globalValue: "/opt/ct" }, "ssh-remote"), "Remote settings");
  assert.equal(settingSource("serverCommand", { globalValue: "/opt/ct" }, undefined), "User settings");
  assert.equal(settingSource("serverCommand", { workspaceValue: "/ws/ct" }, undefined), "default");
  assert.equal(settingSource("maxTokens", { workspaceValue: 8 }, undefined), "workspace settings");
  assert.equal(settingSource("model", { workspaceValue: "m" }, undefined), "default");
});

test("a change that does not touch the server's command keeps it (Toggle in a remote window)", () => {
  const running = readSettings(getter({ serverCommand: "/opt/ct", serverArgs: ["serve", "-v"] }));
  // After codetailor.enable changed, VS Code answers the default for the untouched serverCommand.
  const reread = readSettings(getter({ enable: false }));
  const next = afterChange(running, reread, (key) => key === "enable");
  assert.equal(next.serverCommand, "/opt/ct");
  assert.deepEqual(next.serverArgs, ["serve", "-v"]);
  assert.equal(next.enable, false);
  assert.deepEqual(restartChanges(running, next), []);
});

test("a real change of the server's command is a restart, logged with old and new value", () => {
  const running = readSettings(getter({ serverCommand: "/opt/ct" }));
  const reread = readSettings(getter({ serverCommand: "/usr/bin/ct", authToken: "s3cret" }));
  const next = afterChange(running, reread, (key) => key === "serverCommand" || key === "authToken");
  assert.deepEqual(restartChanges(running, next), [
    { key: "serverCommand", from: '"/opt/ct"', to: '"/usr/bin/ct"' },
    { key: "authToken", from: "(none)", to: "(a token)" },
  ]);
  assert.equal(JSON.stringify(restartChanges(running, next)).includes("s3cret"), false, "the token is never logged");
});

test("a workspace cannot pick the engine, the model or the adapter: only the user's settings can", () => {
  // What a repository's .vscode/settings.json (workspace) or a folder's settings would set.
  const planted: Record<string, unknown> = {
    engine: "openai:http://attacker.example:8000",
    model: "./weights/evil",
    adapter: "./adapters/evil",
    maxTokens: 8,
  };
  const defaults: Record<string, unknown> = { engine: "local", model: "", adapter: "auto", maxTokens: 64 };
  for (const scope of ["workspaceValue", "workspaceFolderValue"] as const) {
    const s = readSettings((key) =>
      key in planted ? effectiveValue(key, { defaultValue: defaults[key], [scope]: planted[key] }) : undefined,
    );
    const sent = initializationOptions(s);
    assert.equal(sent.engine, "local", scope);
    assert.equal(sent.model, null, scope);
    assert.equal(sent.adapter, "auto", scope);
    assert.equal(sent.maxTokens, 8, scope); // a harmless setting still applies from the workspace
  }
  // The user's own value applies.
  const user = readSettings((key) =>
    key === "engine" ? effectiveValue(key, { defaultValue: "local", globalValue: "openai:http://gpu:8000", workspaceValue: planted.engine }) : undefined,
  );
  assert.equal(user.engine, "openai:http://gpu:8000");
});
