/** One toast per failure, cleared on recovery; where "Open Settings" leads; stderr levels. */
import { test } from "node:test";
import assert from "node:assert/strict";

import { FailureNotices, settingsCommand, startFailureMessage, stderrLevel } from "../src/notices";

test("a failure shows one toast until the server recovers", async () => {
  const notices = new FailureNotices();
  assert.equal(notices.shouldShow("start"), true);
  let dismiss!: () => void;
  notices.track(new Promise<void>((resolve) => (dismiss = resolve)));
  assert.equal(notices.shouldShow("start"), false, "the same failure again: no second toast");
  assert.equal(notices.shouldShow("crash"), true, "another failure is news");
  assert.equal(notices.failing, true);
  assert.equal(notices.recovered(), true, "a toast is still on screen: hide it");
  assert.equal(notices.failing, false);
  assert.equal(notices.shouldShow("start"), true, "after recovery, a new failure is shown again");
  dismiss();
  await new Promise((r) => setImmediate(r));
  assert.equal(notices.recovered(), false, "nothing left on screen");
});

test("Open Settings opens the Remote settings in a remote window", () => {
  assert.equal(settingsCommand("ssh-remote").command, "workbench.action.openRemoteSettings");
  assert.equal(settingsCommand(undefined).command, "workbench.action.openSettings");
});

test("a missing command says where to set it", () => {
  const remote = startFailureMessage("spawn codetailor ENOENT", "codetailor", "ssh-remote");
  assert.match(remote, /"codetailor" was not found/);
  assert.match(remote, /Remote settings/);
  assert.match(startFailureMessage("spawn codetailor ENOENT", "codetailor", undefined), /\.venv\/bin\/codetailor/);
  assert.match(startFailureMessage("exit code 2", "ct", undefined), /exit code 2/);
});

test("stderr lines keep their level instead of all being errors", () => {
  assert.equal(stderrLevel("2026-01-01 10:00:00,000 INFO codetailor.server: ready: m on cpu in 1.0 s"), "info");
  assert.equal(stderrLevel("2026-01-01 10:00:00,000 WARNING codetailor.server: x"), "warn");
  assert.equal(stderrLevel("Loading weights: 100%|██████████| 21/21"), "info");
  assert.equal(stderrLevel("Traceback (most recent call last):"), "error");
  assert.equal(stderrLevel("codetailor: error: no such model"), "error");
});
