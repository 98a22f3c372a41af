/** Building the server and finetune command lines. */
import { test } from "node:test";
import assert from "node:assert/strict";

import { adapterFolderName, cliPrefix, describe, finetuneInvocation, serverInvocation } from "../src/command";
import { readSettings } from "../src/settings";

const settings = (values: Record<string, unknown>) => readSettings((k) => values[k]);

test("the server runs as configured (stdio is the server's default)", () => {
  assert.deepEqual(serverInvocation(settings({})), { command: "codetailor", args: ["serve"] });
  const python = settings({ serverCommand: "/repo/.venv/bin/python", serverArgs: ["-m", "lsp_server.cli", "serve", "-v"] });
  assert.deepEqual(serverInvocation(python), {
    command: "/repo/.venv/bin/python",
    args: ["-m", "lsp_server.cli", "serve", "-v"],
  });
});

test("finetune reuses what comes before `serve`, and the model", () => {
  assert.deepEqual(cliPrefix(["-m", "lsp_server.cli", "serve", "-v"]), ["-m", "lsp_server.cli"]);
  assert.deepEqual(cliPrefix(["serve"]), []);
  const inv = finetuneInvocation(
    settings({ serverCommand: "python", serverArgs: ["-m", "lsp_server.cli", "serve"], model: "m" }),
    "/src/repo",
    "/out/a",
  );
  assert.deepEqual(inv, {
    command: "python",
    args: ["-m", "lsp_server.cli", "finetune", "/src/repo", "--out", "/out/a", "--json", "--model", "m"],
  });
  assert.deepEqual(finetuneInvocation(settings({}), "r", "o").args, ["finetune", "r", "--out", "o", "--json"]);
});

test("adapter folders are named after the workspace and the time", () => {
  const when = new Date(2026, 0, 2, 3, 4, 5);
  assert.equal(adapterFolderName("my repo!", when), "my-repo-20260102-030405");
  assert.equal(adapterFolderName("///", when), "workspace-20260102-030405");
});

test("command lines are shown quoted like a shell", () => {
  assert.equal(describe({ command: "codetailor", args: ["serve", "--model", "a b"] }), "codetailor serve --model 'a b'");
});
