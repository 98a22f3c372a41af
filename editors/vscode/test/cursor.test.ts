/** Reporting where the cursor rests (`codetailor/cursor`): debounced, once per line, never throwing. */
import { test } from "node:test";
import assert from "node:assert/strict";

import { CURSOR_DELAY_MS, CursorReporter, type CursorParams } from "../src/cursor";
import { FakeTimers } from "./timers";

const at = (uri: string, line: number, character = 0): CursorParams => ({
  textDocument: { uri },
  position: { line, character },
});

function reporter(send: (p: CursorParams) => unknown = () => undefined) {
  const timers = new FakeTimers();
  const sent: CursorParams[] = [];
  const cursor = new CursorReporter(
    (p) => {
      sent.push(p);
      return send(p);
    },
    CURSOR_DELAY_MS,
    timers,
  );
  return { timers, sent, cursor };
}

test("moves within the delay are reported once, where the cursor came to rest", () => {
  const { timers, sent, cursor } = reporter();
  cursor.moved(() => at("file:///a.py", 1));
  timers.advance(CURSOR_DELAY_MS - 1);
  let line = 5;
  cursor.moved(() => at("file:///a.py", line, 3));
  line = 7; // read when the cursor has rested, not when it moved
  timers.advance(CURSOR_DELAY_MS - 1);
  assert.deepEqual(sent, []);
  timers.advance(1);
  assert.deepEqual(sent, [at("file:///a.py", 7, 3)]);
});

test("a line is reported once until the cursor leaves it, another document always", () => {
  const { timers, sent, cursor } = reporter();
  for (const [uri, line, character] of [
    ["file:///a.py", 3, 0],
    ["file:///a.py", 3, 9], // the same line: the server's window is the same
    ["file:///b.py", 3, 0], // another document: focus moved
    ["file:///a.py", 3, 2], // and back
    ["file:///a.py", 4, 0],
  ] as const) {
    cursor.moved(() => at(uri, line, character));
    timers.advance(CURSOR_DELAY_MS);
  }
  assert.deepEqual(
    sent.map((p) => [p.textDocument.uri, p.position.line]),
    [["file:///a.py", 3], ["file:///b.py", 3], ["file:///a.py", 3], ["file:///a.py", 4]],
  );
  cursor.reset(); // a new server process: it has seen nothing
  cursor.moved(() => at("file:///a.py", 4, 0));
  timers.advance(CURSOR_DELAY_MS);
  assert.equal(sent.length, 5);
});

test("nothing is sent where the editor says there is nothing to report", () => {
  const { timers, sent, cursor } = reporter();
  cursor.moved(() => undefined); // not a document the client serves, or no server
  cursor.moved(() => {
    throw new Error("the editor went away");
  });
  timers.advance(CURSOR_DELAY_MS);
  assert.deepEqual(sent, []);
});

test("a client that is not running never makes it throw; the line is tried again", async () => {
  let fail: "throw" | "reject" | undefined = "throw";
  const { timers, sent, cursor } = reporter(() => {
    if (fail === "throw") throw new Error("Client is not running");
    if (fail === "reject") return Promise.reject(new Error("Client is not running"));
    return Promise.resolve();
  });
  cursor.moved(() => at("file:///a.py", 2));
  assert.doesNotThrow(() => timers.advance(CURSOR_DELAY_MS));
  fail = "reject";
  cursor.moved(() => at("file:///a.py", 2));
  timers.advance(CURSOR_DELAY_MS);
  await new Promise((resolve) => setImmediate(resolve)); // the rejection is handled
  fail = undefined;
  cursor.moved(() => at("file:///a.py", 2));
  timers.advance(CURSOR_DELAY_MS);
  assert.equal(sent.length, 3); // each attempt on the same line went out: none had arrived
});

test("dispose drops the pending report", () => {
  const { timers, sent, cursor } = reporter();
  cursor.moved(() => at("file:///a.py", 1));
  cursor.dispose();
  assert.equal(timers.pending, 0);
  timers.advance(CURSOR_DELAY_MS);
  assert.deepEqual(sent, []);
});
