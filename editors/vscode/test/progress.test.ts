/** Reading `codetailor finetune`'s progress bar and JSON summary. */
import { test } from "node:test";
import assert from "node:assert/strict";

import { lastErrorLine, parseProgress, parseSummary } from "../src/progress";

test("the last tqdm redraw in a chunk wins", () => {
  const chunk = "train:  10%|█         | 10/100 [00:01<00:09, 9.9it/s]\rtrain:  45%|████▌     | 45/100 [00:05<00:06, 9.1it/s, loss=2.1]";
  assert.deepEqual(parseProgress(chunk), { percentage: 45, message: "train: 45/100 [00:05<00:06, 9.1it/s, loss=2.1]" });
  assert.deepEqual(parseProgress("100%|██████████| 3/3 [00:00<00:00]\n"), { percentage: 100, message: "3/3 [00:00<00:00]" });
  assert.equal(parseProgress("loading the model\n"), undefined);
});

test("the summary is the last JSON object on stdout", () => {
  assert.deepEqual(parseSummary('noise\n{"out": "/a", "steps": 3}\n'), { out: "/a", steps: 3 });
  assert.equal(parseSummary("no json here\n{broken"), undefined);
});

test("the error is the last line that is not a progress bar", () => {
  assert.equal(lastErrorLine("50%|█| 1/2 [00:01]\rcodetailor: error: /x: no such file\n"), "codetailor: error: /x: no such file");
});
