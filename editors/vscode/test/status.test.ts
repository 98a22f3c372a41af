/** Status-bar text and the `codetailor.status` summary. */
import { test } from "node:test";
import assert from "node:assert/strict";

import { formatStatus, shortName, stateFromStatus, statusView } from "../src/status";

test("loading shows the server's stage, not a percentage that would jump from 0 to 90", () => {
  const view = statusView({ kind: "loading", message: "loading smollm2-135m", percentage: 0 });
  assert.equal(view.text, "$(loading~spin) Codetailor");
  assert.match(view.tooltip, /loading smollm2-135m/);
  assert.equal(statusView({ kind: "loading", message: "warming up", percentage: 90 }).text, view.text);
});

test("the disabled tooltip names the command as the palette shows it", () => {
  assert.match(statusView({ kind: "disabled" }).tooltip, /"Codetailor: Toggle Completions"/);
});

test("Restricted Mode says why nothing runs and what to do", () => {
  const view = statusView({ kind: "untrusted" });
  assert.equal(view.severity, "warning");
  assert.match(view.tooltip, /Restricted Mode/);
  assert.match(view.tooltip, /trust/);
});

test("ready names the model and the adapter, shortened to their last path part", () => {
  const view = statusView({ kind: "ready", model: "/models/tiny/", adapter: "/x/adapters/repo-1", device: "cpu" });
  assert.equal(view.text, "$(sparkle) tiny + repo-1");
  assert.match(view.tooltip, /on cpu/);
  assert.equal(statusView({ kind: "ready" }).text, "$(sparkle) default model");
  assert.equal(shortName("Qwen/Qwen2.5-Coder-1.5B"), "Qwen2.5-Coder-1.5B");
});

test("errors and a stopped server are marked as errors", () => {
  const error = statusView({ kind: "error", message: "cannot load x: no such model" });
  assert.equal(error.severity, "error");
  assert.match(error.tooltip, /no such model/);
  assert.equal(statusView({ kind: "stopped" }).severity, "error");
  assert.equal(statusView({ kind: "disabled" }).severity, "warning");
});

test("the server's status answer picks the state", () => {
  assert.deepEqual(stateFromStatus({ state: "failed", error: "boom" }), { kind: "error", message: "boom" });
  assert.deepEqual(stateFromStatus({ state: "loading" }), { kind: "loading" });
  assert.equal(stateFromStatus({ state: "ready", settings: { enable: false } }).kind, "disabled");
  assert.deepEqual(stateFromStatus({ state: "ready", model: "m", adapter: null, device: "cuda" }), {
    kind: "ready",
    model: "m",
    adapter: null,
    device: "cuda",
  });
});

test("the status summary counts acceptances", () => {
  const lines = formatStatus({ state: "ready", model: "m", counts: { shown: 8, accepted: 2 } });
  assert.ok(lines.includes("accepted: 2 of 8 shown (25%)"));
  assert.ok(lines[0]!.startsWith("state:    ready"));
});
