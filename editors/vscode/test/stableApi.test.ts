/**
 * Stable API only: shipped VS Code refuses proposed API to a published extension, while
 * code-server (the e2e) allows it, so the e2e alone would hide a violation.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";

const root = path.join(__dirname, "..", "..");

test("the manifest declares no proposed API", () => {
  const manifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as Record<string, unknown>;
  assert.equal("enabledApiProposals" in manifest, false);
});

test("the sources use none of the proposed inline-edit API", () => {
  const src = path.join(root, "src");
  for (const name of readdirSync(src)) {
    // Code, not comments (which say why these are not used).
    const text = readFileSync(path.join(src, name), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    for (const proposed of ["isInlineEdit", "showRange", "InlineEditProvider", "registerInlineEditProvider"]) {
      assert.equal(text.includes(proposed), false, `${name} uses ${proposed}`);
    }
  }
});
