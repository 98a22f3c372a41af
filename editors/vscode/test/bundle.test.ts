/** The bundle (dist/extension.js) loads with only `vscode` provided by the editor. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import * as path from "node:path";
import Module from "node:module";

const bundle = path.join(__dirname, "..", "..", "dist", "extension.js");

/** Any property, call or construction gives another stub: enough for load-time code. */
function stub(): unknown {
  const fn = function () {};
  return new Proxy(fn, {
    get: (_t, key) => (key === Symbol.toPrimitive ? () => "stub" : stub()),
    apply: () => stub(),
    construct: () => stub() as object,
  });
}

test("the bundle exports activate and deactivate", { skip: !existsSync(bundle) && "run `npm run build` first" }, () => {
  const loader = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
  const original = loader._load;
  loader._load = (request: string, ...rest: unknown[]) => (request === "vscode" ? stub() : original(request, ...rest));
  try {
    const extension = require(bundle) as Record<string, unknown>;
    assert.equal(typeof extension.activate, "function");
    assert.equal(typeof extension.deactivate, "function");
  } finally {
    loader._load = original;
  }
});
