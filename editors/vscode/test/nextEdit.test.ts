/** Next edits (nextEdit.ts): which answer is shown, where, and what Tab and Escape do. */
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  CLEAR_AFTER_MOVES,
  NextEditController,
  pickEdit,
  placement,
  preview,
  tabAction,
  type Command,
  type InlineEditParams,
  type Look,
  type NextEdit,
  type NextEditHost,
  type NextEditOptions,
  type Position,
} from "../src/nextEdit";
import { FakeTimers } from "./timers";

const URI = "file:///w/scale.py";
const pos = (line: number, character: number): Position => ({ line, character });

function edit(over: Partial<NextEdit> = {}): NextEdit {
  return {
    text: "x * k",
    range: { start: pos(3, 11), end: pos(3, 21) },
    textDocument: { uri: URI, version: 4 },
    command: { title: "Accept", command: "codetailor.acceptedNextEdit", arguments: ["e1"] },
    ...over,
  };
}

/** A host that records what the controller asks of the editor, with the cursor and answer the test sets. */
class FakeHost implements NextEditHost {
  cursorAt: Position = pos(0, 13);
  version = 4;
  answer: unknown = { edits: [edit()] };
  requests: { params: InlineEditParams; signal: AbortSignal }[] = [];
  drawn: { edit: NextEdit; look: Look }[] = [];
  log: string[] = [];
  visible = false;
  applyOk = true;

  params(): InlineEditParams {
    return { textDocument: { uri: URI, version: this.version }, position: this.cursorAt };
  }
  request(params: InlineEditParams, signal: AbortSignal): Promise<unknown> {
    this.requests.push({ params, signal });
    return signal.aborted ? Promise.reject(new Error("aborted")) : Promise.resolve(this.answer);
  }
  cursor(): Position {
    return this.cursorAt;
  }
  show(e: NextEdit, look: Look): void {
    this.drawn.push({ edit: e, look });
    this.log.push(`show ${look}`);
  }
  showGhost(): void {
    this.log.push("ghost");
  }
  hide(): void {
    this.log.push("hide");
  }
  didShow(): void {
    this.log.push("didShow");
  }
  moveCursor(p: Position): void {
    this.cursorAt = p;
    this.log.push(`move ${p.line}:${p.character}`);
  }
  async apply(e: NextEdit): Promise<boolean> {
    this.log.push(`apply ${e.text}`);
    return this.applyOk;
  }
  accepted(c: Command): void {
    this.log.push(`accepted ${c.command} ${JSON.stringify(c.arguments)}`);
  }
  dismissed(id: string, reason: string): void {
    this.log.push(`dismissed ${id} ${reason}`);
  }
  setVisible(v: boolean): void {
    this.visible = v;
  }
}

function setup(options: Partial<NextEditOptions> = {}) {
  const host = new FakeHost();
  const timers = new FakeTimers();
  const opts: NextEditOptions = { enabled: true, debounceMs: 300, indicatorOnly: false, ...options };
  const controller = new NextEditController(host, () => opts, timers);
  return { host, timers, controller, opts };
}

/** Let the request's promise and the controller's continuation run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

async function shownAfterAnEdit(options: Partial<NextEditOptions> = {}) {
  const s = setup(options);
  s.controller.changed();
  s.timers.advance(300);
  await settle();
  return s;
}

test("pickEdit takes the first well-formed edit for this version and drops stale ones", () => {
  assert.equal(pickEdit({ edits: [] }, URI, 4), undefined);
  assert.equal(pickEdit(null, URI, 4), undefined);
  assert.equal(pickEdit({ edits: [edit({ textDocument: { uri: URI, version: 3 } })] }, URI, 4), undefined);
  assert.equal(pickEdit({ edits: [edit({ textDocument: { uri: "file:///other.py", version: 4 } })] }, URI, 4), undefined);
  const broken = { text: 1, range: { start: pos(0, 0) } };
  const good = edit({ text: "y" });
  assert.deepEqual(pickEdit({ edits: [broken, good, edit()] }, URI, 4), good);
});

test("an edit on the cursor's line that contains the cursor is ghost text; others are decorations", () => {
  const sameLine = edit({ range: { start: pos(3, 4), end: pos(3, 9) } });
  assert.equal(placement(sameLine, pos(3, 9)), "ghost");
  assert.equal(placement(sameLine, pos(3, 4)), "ghost");
  assert.equal(placement(sameLine, pos(3, 10)), "decoration"); // past its end
  assert.equal(placement(sameLine, pos(2, 5)), "decoration"); // another line
  assert.equal(placement(edit({ text: "a\nb", range: sameLine.range }), pos(3, 5)), "decoration");
  assert.equal(placement(edit({ range: { start: pos(3, 0), end: pos(4, 0) } }), pos(3, 0)), "decoration");
});

test("Tab jumps from elsewhere and applies on the edit's lines", () => {
  const e = edit({ range: { start: pos(3, 4), end: pos(5, 0) } });
  assert.equal(tabAction(e, pos(0, 0)), "jump");
  assert.equal(tabAction(e, pos(6, 0)), "jump");
  assert.equal(tabAction(e, pos(3, 0)), "apply");
  assert.equal(tabAction(e, pos(5, 2)), "apply");
});

test("preview shows line breaks and cuts long text", () => {
  assert.equal(preview("a\nb"), "a ⏎ b");
  assert.equal(preview("x".repeat(100), 10), `${"x".repeat(9)}…`);
});

test("an edit is asked for once edits pause, shown away from the cursor, and the cursor stays", async () => {
  const { host, timers, controller } = setup();
  controller.changed();
  timers.advance(299);
  controller.changed(); // typing on: the wait starts again
  timers.advance(299);
  assert.equal(host.requests.length, 0);
  timers.advance(1);
  await settle();
  assert.equal(host.requests.length, 1);
  assert.deepEqual(host.requests[0]!.params.textDocument, { uri: URI, version: 4 });
  assert.deepEqual(host.log, ["show full", "didShow"]);
  assert.equal(host.visible, true);
  assert.deepEqual(host.cursorAt, pos(0, 13)); // never moved without Tab
  assert.deepEqual(controller.shown, edit());
});

test("Tab jumps, Tab again applies and runs the edit's command", async () => {
  const { host, controller } = await shownAfterAnEdit();
  assert.equal(await controller.tab(), true);
  assert.deepEqual(host.cursorAt, pos(3, 11));
  assert.ok(controller.shown, "still shown after the jump");
  controller.cursorMoved(pos(3, 11)); // the editor reports our own move: not the user's
  controller.cursorMoved(pos(3, 11));
  controller.cursorMoved(pos(3, 11));
  assert.ok(controller.shown);
  assert.equal(await controller.tab(), true);
  assert.deepEqual(host.log.slice(2), ["move 3:11", "show full", "hide", "apply x * k", 'accepted codetailor.acceptedNextEdit ["e1"]']);
  assert.equal(host.visible, false);
  assert.equal(controller.shown, undefined);
  assert.equal(await controller.tab(), false, "nothing shown: Tab is not ours");
});

test("an edit that could not be applied is not counted as accepted", async () => {
  const { host, controller } = await shownAfterAnEdit();
  host.cursorAt = pos(3, 0);
  host.applyOk = false;
  await controller.tab();
  assert.ok(!host.log.some((l) => l.startsWith("accepted")));
});

test("Escape dismisses; a few cursor moves of the user hide it too", async () => {
  const first = await shownAfterAnEdit();
  assert.equal(first.controller.dismiss(), true);
  assert.equal(first.host.visible, false);
  assert.equal(first.controller.dismiss(), false);
  assert.deepEqual(first.host.log.filter((l) => l.startsWith("dismissed")), ["dismissed e1 dismiss"]);

  const { host, controller } = await shownAfterAnEdit();
  for (let i = 1; i < CLEAR_AFTER_MOVES; i++) controller.cursorMoved(pos(i, 0));
  assert.ok(controller.shown);
  controller.cursorMoved(pos(9, 0));
  assert.equal(controller.shown, undefined);
  assert.equal(host.visible, false);
  assert.ok(host.log.includes("dismissed e1 cursor-moved"));

  const edited = await shownAfterAnEdit();
  edited.controller.changed(); // an edit hides it too, but that is no dismissal
  assert.ok(!edited.host.log.some((l) => l.startsWith("dismissed")));
});

test("indicator only: a gutter mark until Tab jumps there; never applied unseen", async () => {
  const { host, controller } = await shownAfterAnEdit({ indicatorOnly: true });
  assert.equal(host.drawn.at(-1)!.look, "indicator");
  await controller.tab();
  assert.equal(host.drawn.at(-1)!.look, "full");
  await controller.tab();
  assert.ok(host.log.includes("apply x * k"));

  const atEdit = setup({ indicatorOnly: true });
  atEdit.host.cursorAt = pos(3, 0);
  atEdit.controller.changed();
  atEdit.timers.advance(300);
  await settle();
  await atEdit.controller.tab(); // on the edit's line already: show it first
  assert.ok(!atEdit.host.log.some((l) => l.startsWith("apply")));
  assert.equal(atEdit.host.drawn.at(-1)!.look, "full");
  await atEdit.controller.tab();
  assert.ok(atEdit.host.log.includes("apply x * k"));
});

test("a stale answer, an answer after a newer edit, or none shows nothing", async () => {
  const stale = setup();
  stale.host.answer = { edits: [edit({ textDocument: { uri: URI, version: 3 } })] };
  stale.controller.changed();
  stale.timers.advance(300);
  await settle();
  assert.deepEqual(stale.host.log, []);

  const empty = setup();
  empty.host.answer = { edits: [] };
  empty.controller.changed();
  empty.timers.advance(300);
  await settle();
  assert.deepEqual(empty.host.log, []);

  const superseded = setup();
  let resolve: (v: unknown) => void = () => {};
  superseded.host.request = (params, signal) => {
    superseded.host.requests.push({ params, signal });
    return new Promise((r) => (resolve = r));
  };
  superseded.controller.changed();
  superseded.timers.advance(300);
  superseded.controller.changed(); // the user edits while the server thinks
  assert.equal(superseded.host.requests[0]!.signal.aborted, true, "the older request is cancelled");
  resolve({ edits: [edit()] });
  await settle();
  assert.deepEqual(superseded.host.log, []);
});

test("turned off: nothing is asked; same-line edits at the cursor go to ghost text", async () => {
  const off = setup({ enabled: false });
  off.controller.changed();
  off.timers.advance(1000);
  await settle();
  assert.equal(off.host.requests.length, 0);

  const ghost = setup();
  ghost.host.cursorAt = pos(3, 15);
  ghost.controller.changed();
  ghost.timers.advance(300);
  await settle();
  assert.deepEqual(ghost.host.log, ["ghost"]);
  assert.equal(ghost.controller.shown, undefined);
  assert.equal(ghost.host.visible, false, "Tab stays VS Code's (its inline suggestion)");
});
