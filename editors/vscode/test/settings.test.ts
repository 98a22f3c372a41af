/** Settings → initializationOptions and didChangeConfiguration. */
import { test } from "node:test";
import assert from "node:assert/strict";

import { DEFAULTS, initializationOptions, needsRestart, readSettings, toServerSettings } from "../src/settings";

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
    enable: true,
    promptFormat: null,
    context: true,
    engine: "local",
    feedback: true,
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
      enable: false,
      promptFormat: "",
      context: false,
      engine: "openai:http://gpu-box:8000",
      feedback: false,
    }),
  );
  assert.deepEqual(toServerSettings(s), {
    model: "Qwen/Qwen2.5-Coder-1.5B",
    adapter: "/tmp/adapter",
    device: "cuda:1",
    dtype: "bfloat16",
    maxTokens: 128,
    multiline: "never",
    timeBudgetMs: 500,
    enable: false,
    promptFormat: null,
    context: false,
    engine: "openai:http://gpu-box:8000",
    feedback: false,
  });
});

test("the auth token goes in initializationOptions only when set", () => {
  assert.equal("authToken" in initializationOptions(readSettings(getter({}))), false);
  const options = initializationOptions(readSettings(getter({ authToken: "s3cret" })));
  assert.equal(options.authToken, "s3cret");
  assert.equal("authToken" in toServerSettings(readSettings(getter({ authToken: "s3cret" }))), false);
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
