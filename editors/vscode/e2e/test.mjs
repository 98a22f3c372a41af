// The extension in a real VS Code: code-server (VS Code with a remote extension
// host, so a "remote window") driven by Debian's Chromium through puppeteer-core.
//
// It installs the .vsix built from the tree, opens a workspace with a real Python
// file, and with our server on a tiny model built in code (its text is gibberish,
// so the checks are on what VS Code shows and inserts, not on the words):
//   1. types mid-word like a person and waits for ghost text in the DOM;
//   2. presses Tab and checks the saved document holds exactly what was shown;
//   3. toggles completions off and on: the server process is the same;
//   4. changes a setting: the server process is the same and completions arrive;
//   5. next edits: after an edit that implies another three lines below, the edit is
//      drawn there (struck old text, the new text after it, a gutter mark) while the
//      cursor stays; Tab jumps, Tab applies, the file holds the edit: with the real
//      server on a scripted engine (tests/e2e/scripted_engine.py), which counts it;
//   6. the same against the fake server (editors/neovim/tests/fake_server.py, one
//      fixed edit), which logs the didShow and accept messages; then Tab indents;
// and, before 1, that the server heard where the cursor rests (codetailor/cursor).
// On failure it keeps screenshots, the page's status bar and code-server's log
// under $CODETAILOR_E2E_ARTIFACTS. Run through run.sh.

import { spawn, spawnSync, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, writeFileSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import puppeteer from "puppeteer-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const REPO = env.CODETAILOR_REPO ?? path.resolve(here, "../../..");
const PYTHON = env.CODETAILOR_PYTHON ?? path.join(REPO, ".venv/bin/python");
const VSIX = env.CODETAILOR_VSIX ?? path.resolve(here, "../codetailor.vsix");
const CHROMIUM = env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = env.CODETAILOR_E2E_ARTIFACTS ?? path.join(here, "artifacts");
const FAKE_SERVER = path.join(REPO, "editors/neovim/tests/fake_server.py");
const CODE_SERVER = path.join(here, "node_modules/code-server/out/node/entry.js");
const STEP_MS = Number(env.CODETAILOR_E2E_STEP_MS ?? 90_000); // the bound on each wait

const started = Date.now();
const log = (...args) => console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1)}s]`, ...args);

/** Wait until `fn` returns a truthy value, checking every `every` ms, at most `ms`. */
async function until(what, fn, ms = STEP_MS, every = 200) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, every));
  }
  throw new Error(`timed out after ${ms / 1000} s waiting for ${what} (last: ${String(last)})`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** Process ids of servers on our tiny model (only this test's servers use that path). */
function serverPids(model) {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return out
    .split("\n")
    .filter((l) => l.includes("lsp_server.cli serve") && l.includes(model))
    .map((l) => Number(l.trim().split(/\s+/, 1)[0]));
}

const tmp = mkdtempSync(path.join(tmpdir(), "codetailor-e2e-"));
const dirs = {
  model: path.join(tmp, "model"),
  home: path.join(tmp, "home"),
  userData: path.join(tmp, "code-server"),
  extensions: path.join(tmp, "extensions"),
  chrome: path.join(tmp, "chrome"),
  workspace: path.join(tmp, "workspace"),
};
for (const dir of [dirs.home, dirs.workspace, path.join(dirs.userData, "User"), path.join(dirs.userData, "Machine")])
  mkdirSync(dir, { recursive: true });

const SOURCE = `"""Shapes and their measures."""

import math


class Circle:
    def __init__(self, radius: float) -> None:
        self.radius = radius

    def area(self) -> float:
        return math.pi * self.radius**2

    def perimeter(self) -> float:
        return 2 * math.pi * self.radius


`;
const FILE = path.join(dirs.workspace, "shapes.py");
writeFileSync(FILE, SOURCE);

// User settings: an editor that shows only inline suggestions (no suggest widget to
// take the Tab), the textarea input (puppeteer types into it), a short completion.
const userSettings = {
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.welcomePage.walkthroughs.openOnInstall": false,
  "security.workspace.trust.enabled": false,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "extensions.ignoreRecommendations": true,
  "editor.editContext": false,
  "editor.quickSuggestions": { other: false, comments: false, strings: false },
  "editor.suggestOnTriggerCharacters": false,
  "editor.wordBasedSuggestions": "off",
  "editor.autoClosingBrackets": "never",
  "editor.autoClosingQuotes": "never",
  "editor.inlineSuggest.enabled": true,
  "files.autoSave": "off",
  "codetailor.multiline": "never",
  "codetailor.maxTokens": 8,
  "codetailor.timeBudgetMs": 20000,
  // The tiny random test model is never confident enough for the show-or-stay-quiet rule.
  "codetailor.quietness": 0,
};
const USER_SETTINGS = path.join(dirs.userData, "User", "settings.json");
writeFileSync(USER_SETTINGS, JSON.stringify(userSettings, null, 2));
// The server's command line is machine-scoped: in this remote window it applies
// from the Remote ("Machine") settings, as the README tells users.
// It starts wrong, as for a fresh install whose `codetailor` is not on the PATH; the
// test then fixes it where the error's "Open Settings" leads.
const serverCommand = env.CODETAILOR_E2E_SERVER_COMMAND ?? PYTHON;
const MACHINE_SETTINGS = path.join(dirs.userData, "Machine", "settings.json");
const machineSettings = (command) => ({
  "codetailor.serverCommand": command,
  "codetailor.serverArgs": ["-m", "lsp_server.cli", "serve", "--model", dirs.model],
});
writeFileSync(MACHINE_SETTINGS, JSON.stringify(machineSettings("codetailor-not-on-path"), null, 2));

let codeServer;
let engine; // the scripted engine process (step 5)
let browser;
let page;
let codeServerLog = "";

async function main() {
  log(`building a tiny model in ${dirs.model}`);
  const built = spawnSync(
    PYTHON,
    ["-c", "import sys; from pathlib import Path; from tests.tiny import build_model; build_model(Path(sys.argv[1]))", dirs.model],
    { cwd: REPO, encoding: "utf8", env: { ...env, PYTHONPATH: REPO } },
  );
  if (built.status !== 0) throw new Error(`building the tiny model failed:\n${built.stderr}`);

  const common = ["--user-data-dir", dirs.userData, "--extensions-dir", dirs.extensions];
  log(`installing ${VSIX}`);
  execFileSync(process.execPath, [CODE_SERVER, ...common, "--install-extension", VSIX], { stdio: "pipe" });

  const port = await freePort();
  codeServer = spawn(
    process.execPath,
    [CODE_SERVER, ...common, "--auth", "none", "--bind-addr", `127.0.0.1:${port}`, "--disable-telemetry",
      "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override", dirs.workspace],
    {
      env: {
        ...env,
        PYTHONPATH: REPO, // the server runs from the tree: python -m lsp_server.cli serve
        CODETAILOR_HOME: dirs.home,
        HF_HUB_OFFLINE: "1",
        TRANSFORMERS_OFFLINE: "1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  codeServer.stdout.on("data", (d) => (codeServerLog += d));
  codeServer.stderr.on("data", (d) => (codeServerLog += d));
  const url = `http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.workspace)}`;
  await until("code-server to listen", () => /HTTP server listening/.test(codeServerLog), 60_000);

  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: dirs.chrome,
    defaultViewport: { width: 1400, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
  page = await browser.newPage();
  log(`opening ${url}`);
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.waitForSelector(".monaco-workbench .part.statusbar", { timeout: STEP_MS });

  await openFile("shapes.py");

  // 0. First run, the command not found: one error toast (not the language client's
  // too); its "Open Settings" opens the Remote settings; fixing the command there
  // starts the server and takes the toast away.
  await waitForStatus("error", "the error status (the server command is not found)");
  const toasts = await until("our error toast", async () => {
    const texts = await toastTexts();
    return texts.some((t) => t.includes("Codetailor: cannot start the server")) ? texts : false;
  });
  const ours = toasts.filter((t) => /codetailor/i.test(t));
  if (ours.length !== 1) throw new Error(`expected one Codetailor toast, got ${ours.length}:\n${ours.join("\n")}`);
  log(`one toast: ${JSON.stringify(ours[0].slice(0, 120))}`);
  await clickToastButton("Open Settings");
  const tab = await until("the Remote settings tab", async () => {
    const checked = await page.$$eval(".settings-tabs-widget .action-label.checked", (els) => els.map((e) => e.textContent ?? "").join(" "));
    return /Remote/.test(checked) ? checked : false;
  });
  log(`"Open Settings" opened the settings at: ${tab.trim()}`);
  await editSettingsJson("Preferences: Open Remote Settings (JSON)", MACHINE_SETTINGS, machineSettings(serverCommand));
  await waitForStatus("sparkle", "the server ready (status bar: model name)");
  await until("the error toast to go away", async () => !(await toastTexts()).some((t) => t.includes("cannot start the server")));
  log("fixed in the Remote settings: the server started and the toast went away");
  const pids = serverPids(dirs.model);
  log(`server ready; pid ${pids.join(",")}`);
  if (pids.length !== 1) throw new Error(`expected one server process, found ${pids.length}`);
  // The server's log reads right: a "ready" line at info, and no line marked as an error.
  const ready = await until("the server's ready line in the log", () => /\[info\].*ready: model on cpu in [\d.]+ s/.exec(serverLog()));
  log(`log: ${ready[0]}`);
  const sinceStart = serverLog().split(/^.*\[client\] starting .*$/m).pop() ?? ""; // this (healthy) start
  const errors = sinceStart.split("\n").filter((l) => l.includes("[error]"));
  if (errors.length) throw new Error(`a healthy start logged errors:\n${errors.join("\n")}`);

  // The extension tells the server where the cursor rests: at start, and when it moves.
  const reports = await cursorReports(0);
  log(`the server counted ${reports} cursor report(s) since it started`);
  await page.click(".editor-instance .monaco-editor .view-lines"); // back from the palette
  await page.keyboard.down("Control");
  await page.keyboard.press("Home");
  await page.keyboard.up("Control");
  log(`moved to the top: ${await cursorReports(reports)} cursor report(s)`);
  await command("Notifications: Clear All Notifications");

  // 1-2. Mid-word: the line so far ends inside a word; ghost text, Tab, the document.
  await completeAndAccept("result = Circle(2.0).ar", 17);

  // 3. Toggle off and on: the same server process.
  await command("Codetailor: Toggle Completions");
  await waitForStatus("circle-slash", "the disabled status");
  await command("Codetailor: Toggle Completions");
  await waitForStatus("sparkle", "the ready status again");
  const afterToggle = serverPids(dirs.model);
  if (afterToggle.join() !== pids.join()) throw new Error(`toggling restarted the server: ${pids} -> ${afterToggle}`);
  log("toggled off and on; same server process");

  // 4. A setting changes, written in the settings as a user does: no restart, completions still arrive.
  await editUserSettings({ ...userSettings, "codetailor.maxTokens": 6 });
  await until("the extension to pass maxTokens 8 -> 6 on", () => serverLog().includes("codetailor.maxTokens: 8 -> 6"));
  await completeAndAccept("total = result + res", 18);
  const afterSetting = serverPids(dirs.model);
  if (afterSetting.join() !== pids.join()) throw new Error(`a setting change restarted the server: ${pids} -> ${afterSetting}`);
  log("setting changed; same server process; completions still arrive");

  await nextEditRealServer();
  await nextEditFakeServer();
}

// The user renames `factor` in the signature; the server suggests the matching change
// three lines below (the fake server: the first "x * factor" becomes "x * k").
const SCALE = "def scale(x, factor):\n    a = 1\n    b = 2\n    return x * factor\n";
const FAKE_LOG = path.join(tmp, "fake-server.log");

/** The fake server's received messages named `method`. */
function fakeReceived(method) {
  if (!existsSync(FAKE_LOG)) return [];
  return readFileSync(FAKE_LOG, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((m) => m.method === method);
}

/** The cursor as the status bar shows it ("Ln 4, Col 12"). */
function cursorStatus() {
  return page.$eval("#status\\.editor\\.selection", (e) => (e.textContent ?? "").trim()).catch(() => "");
}

/**
 * What the next-edit decorations draw in the editor: the text of the line that holds
 * `marker` as rendered (text drawn after the edit is injected into it), the struck
 * text, and how many gutter marks show our icon.
 */
function nextEditDom(marker) {
  return page.evaluate((marker) => {
    const editor = document.querySelector(".editor-instance .monaco-editor");
    if (!editor) return { line: "", struck: "", gutter: 0 };
    const nbsp = (t) => (t ?? "").replace(/\u00a0/g, " ");
    const lines = [...editor.querySelectorAll(".view-lines .view-line")];
    const row = lines.find((l) => nbsp(l.textContent).includes(marker));
    const leaves = row ? [...row.querySelectorAll("span")].filter((s) => s.children.length === 0) : [];
    const line = leaves
      .map((s) => {
        const after = getComputedStyle(s, "::after").content;
        return nbsp(s.textContent) + (after && after !== "none" && after !== "normal" ? after.replace(/^"|"$/g, "") : "");
      })
      .join("");
    const struck = leaves
      .filter((s) => getComputedStyle(s).textDecorationLine.includes("line-through"))
      .map((s) => nbsp(s.textContent))
      .join("");
    const gutter = [...editor.querySelectorAll("div")].filter((d) => /next-edit\.svg/.test(getComputedStyle(d).backgroundImage)).length;
    return { line, struck, gutter };
  }, marker);
}

/**
 * Rename `factor` in the signature of `name` (SCALE), wait for the next edit drawn on
 * line 4 (`expect.struck` struck, `expect.line` the line as drawn, the gutter icon) while
 * the cursor stays; Tab jumps to `expect.jumpTo`, Tab applies, the saved file holds it.
 */
async function renameThenTabTab(name, expect) {
  const file = path.join(dirs.workspace, name);
  writeFileSync(file, SCALE);
  await openFile(name);
  await page.keyboard.down("Control");
  await page.keyboard.press("Home");
  await page.keyboard.up("Control");
  await page.keyboard.press("End");
  await page.keyboard.press("ArrowLeft");
  await page.keyboard.press("ArrowLeft");
  for (let i = 0; i < "factor".length; i++) await page.keyboard.press("Backspace");
  await page.keyboard.type("k");
  const at = await until("the cursor after the rename", async () => ((await cursorStatus()).includes("Ln 1, Col 15") ? cursorStatus() : false));
  const drawn = await until(`the next edit drawn three lines below in ${name}`, async () => {
    const dom = await nextEditDom("return");
    if (dom.struck === expect.struck && dom.line.includes(expect.line) && dom.gutter > 0) return dom;
    throw new Error(JSON.stringify(dom)); // shown as the last state if it never comes
  });
  log(`next edit drawn away from the cursor: ${JSON.stringify(drawn)}`);
  if ((await cursorStatus()) !== at) throw new Error(`the cursor moved by itself: ${at} -> ${await cursorStatus()}`);

  await page.keyboard.press("Tab");
  await until(`Tab to jump to the edit (${expect.jumpTo})`, async () => (await cursorStatus()).includes(expect.jumpTo));
  const lines = () => readFileSync(file, "utf8").split("\n");
  if (lines()[3] !== "    return x * factor") throw new Error(`Tab applied instead of jumping: ${lines()[3]}`);
  await page.keyboard.press("Tab");
  await page.keyboard.down("Control");
  await page.keyboard.press("KeyS");
  await page.keyboard.up("Control");
  await until("the file to hold the edit", () => lines()[3] === "    return x * k" && lines()[0] === "def scale(x, k):", 30_000);
  log(`Tab jumped, Tab applied: ${JSON.stringify(lines()[3])}`);
  await until("the decorations to go", async () => {
    const dom = await nextEditDom("return");
    return dom.struck === "" && dom.gutter === 0;
  });
  return lines;
}

/** The text after the last status that "Codetailor: Show Status" wrote to the log. */
async function freshStatus() {
  await command("Codetailor: Show Status");
  await new Promise((r) => setTimeout(r, 500));
  return serverLog().split("[status]").pop() ?? "";
}

/**
 * 5. The whole path: the real server builds the next-edit prompt from the edits, and a
 * scripted engine (tests/e2e/scripted_engine.py, `codetailor.engine`) writes the updated
 * window; the server counts the edit shown and accepted.
 */
async function nextEditRealServer() {
  const rules = path.join(tmp, "rules.json");
  const renamed = SCALE.replace("(x, factor)", "(x, k)");
  writeFileSync(rules, JSON.stringify([["current/renamed.py\ndef scale(x, k):", renamed.replace("x * factor", "x * k")]]));
  let out = "";
  engine = spawn(PYTHON, ["-m", "tests.e2e.scripted_engine", "--rules", rules], {
    cwd: REPO,
    env: { ...env, PYTHONPATH: REPO },
    stdio: ["ignore", "pipe", "pipe"],
  });
  engine.stdout.on("data", (d) => (out += d));
  const url = await until("the scripted engine's address", () => /http:\/\/127\.0\.0\.1:\d+/.exec(out)?.[0], 30_000);
  await editUserSettings({ ...userSettings, "codetailor.maxTokens": 6 });
  // The engine is machine-scoped (a workspace may not choose it): in this remote window
  // it applies from the Remote settings, as the server's command line does.
  await editSettingsJson("Preferences: Open Remote Settings (JSON)", MACHINE_SETTINGS, {
    ...machineSettings(serverCommand),
    "codetailor.engine": `openai:${url}`,
  });
  await until("the server on the scripted engine", async () => (await freshStatus()).includes(`"device": "remote ${url}"`), STEP_MS, 1000);
  await renameThenTabTab("renamed.py", { struck: "factor", line: "    return x * factork", jumpTo: "Ln 4, Col 16" });
  const counts = await until("the server to count the next edit shown and accepted", async () => {
    const status = await freshStatus();
    const section = status.slice(status.indexOf('"nextEdit": {'));
    const count = (key) => Number(new RegExp(`"${key}": (\\d+)`).exec(section)?.[1] ?? 0);
    return count("accepted") >= 1 && count("displayed") >= 1 ? { displayed: count("displayed"), accepted: count("accepted") } : false;
  }, STEP_MS, 1000);
  log(`the real server counted the next edit: ${JSON.stringify(counts)}`);
}

/**
 * 6. The extension's own logic against a server that answers one fixed next edit (the
 * fake one): what it draws, the didShow notification and the accept command it sends;
 * with nothing shown, Tab indents.
 */
async function nextEditFakeServer() {
  await editSettingsJson("Preferences: Open Remote Settings (JSON)", MACHINE_SETTINGS, {
    "codetailor.serverCommand": PYTHON,
    "codetailor.serverArgs": [FAKE_SERVER, "serve", "--completion", "", "--next-edit", "x * factor=>x * k", "--log", FAKE_LOG],
  });
  await until("the fake server to start", () => fakeReceived("initialized").length > 0);
  const lines = await renameThenTabTab("scale.py", { struck: "x * factor", line: "    return x * factorx * k", jumpTo: "Ln 4, Col 12" });
  const shown = fakeReceived("textDocument/didShowInlineEdit");
  if (shown[0]?.params?.item?.text !== "x * k") throw new Error(`didShowInlineEdit: ${JSON.stringify(shown)}`);
  const accepted = await until("codetailor.acceptedNextEdit at the server", () =>
    fakeReceived("workspace/executeCommand").find((m) => m.params.command === "codetailor.acceptedNextEdit"),
  );
  log(`the server heard didShowInlineEdit and ${JSON.stringify(accepted.params)}`);

  // Nothing shown now: Tab is VS Code's again (indents the new last line).
  await page.keyboard.down("Control");
  await page.keyboard.press("End");
  await page.keyboard.up("Control");
  await page.keyboard.press("Tab");
  await page.keyboard.type("z");
  await page.keyboard.down("Control");
  await page.keyboard.press("KeyS");
  await page.keyboard.up("Control");
  await until("Tab to indent with nothing shown", () => lines().some((l) => /^\s+z$/.test(l)), 30_000);
  log(`with nothing shown Tab indents: ${JSON.stringify(lines().filter((l) => l.endsWith("z")))}`);
}

/** Open the file from the Explorer and put the cursor at its end. */
async function openFile(name) {
  const row = await until(`${name} in the Explorer`, async () => {
    for (const handle of await page.$$(".explorer-folders-view .monaco-list-row")) {
      if ((await handle.evaluate((e) => e.textContent ?? "")).includes(name)) return handle;
    }
    return false;
  });
  await row.click();
  await page.waitForSelector(".editor-instance .monaco-editor .view-lines", { visible: true, timeout: STEP_MS });
  await focusEditor();
}

/** Run a command from the palette. */
async function command(title) {
  await page.keyboard.press("F1");
  await page.waitForSelector(".quick-input-widget input", { visible: true, timeout: STEP_MS });
  await page.keyboard.type(title);
  await until(`the palette to list ${title}`, () =>
    page.$$eval(".quick-input-list .monaco-list-row", (rows, t) => rows.some((r) => r.textContent.includes(t)), title),
  );
  await page.keyboard.press("Enter");
}

/** Our status bar item (the one whose tooltip starts "Codetailor:"), as its codicons and text. */
function statusItem() {
  return page.$$eval(".statusbar-item", (items) => {
    for (const item of items) {
      const label = item.querySelector("a, .statusbar-item-label") ?? item;
      const aria = label.getAttribute("aria-label") ?? "";
      const text = label.textContent ?? "";
      const icons = [...label.querySelectorAll(".codicon")].map((i) => i.className);
      if (/Codetailor|\$\(/.test(text + aria) || icons.some((c) => /sparkle|circle-slash|loading|shield|debug-stop/.test(c))) {
        if (/Codetailor|model|sparkle/.test(text + aria + icons.join(" "))) return { text, aria, icons: icons.join(" ") };
      }
    }
    return null;
  });
}

async function waitForStatus(icon, what) {
  await until(what, async () => {
    const item = await statusItem();
    return item && item.icons.includes(`codicon-${icon}`) ? item : false;
  });
}

/**
 * The server's count of cursor reports (`ahead.cursors` in codetailor.status) once it
 * exceeds `than`: "Codetailor: Show Status" writes the status to the log.
 */
function cursorReports(than) {
  return until(`the server to count more than ${than} cursor report(s)`, async () => {
    await command("Codetailor: Show Status");
    const counts = [...serverLog().matchAll(/"cursors": (\d+)/g)];
    const last = counts.length ? Number(counts[counts.length - 1][1]) : 0;
    return last > than ? last : false;
  }, STEP_MS, 1000);
}

/** The Codetailor output channel as VS Code writes it to disk (a log output channel). */
function serverLog() {
  const found = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/Codetailor\.log$/.test(entry.name)) found.push(full);
    }
  };
  walk(path.join(dirs.userData, "logs"));
  return found.map((f) => readFileSync(f, "utf8")).join("\n");
}

/** The texts of the notification toasts on screen. */
function toastTexts() {
  return page.$$eval(".notifications-toasts .notification-toast", (els) =>
    els.filter((e) => e.offsetParent !== null).map((e) => e.textContent ?? ""),
  );
}

async function clickToastButton(label) {
  const button = await until(`the toast's "${label}" button`, async () => {
    for (const handle of await page.$$(".notifications-toasts .notification-toast .monaco-button")) {
      if ((await handle.evaluate((e) => e.textContent ?? "")).trim() === label) return handle;
    }
    return false;
  });
  await button.click();
}

function editUserSettings(settings) {
  return editSettingsJson("Preferences: Open User Settings (JSON)", USER_SETTINGS, settings);
}

/** Replace a settings file's content through `title` (an "Open ... Settings (JSON)" command), then back to the file. */
async function editSettingsJson(title, file, settings) {
  await command(title);
  await until("settings.json in the editor", () =>
    page.$eval(".tabs-container .tab.active", (t) => (t.textContent ?? "").includes("settings.json")),
  );
  // The tab shows before its editor is drawn (seen on a loaded machine): wait for the text area.
  await page.waitForSelector(".editor-instance .monaco-editor .view-lines", { visible: true, timeout: STEP_MS });
  await page.click(".editor-instance .monaco-editor .view-lines");
  await page.keyboard.down("Control");
  await page.keyboard.press("KeyA");
  await page.keyboard.up("Control");
  await page.keyboard.press("Backspace");
  await page.keyboard.type(JSON.stringify(settings));
  await page.keyboard.press("Escape");
  await page.keyboard.down("Control");
  await page.keyboard.press("KeyS");
  await page.keyboard.up("Control");
  await until(`${path.basename(path.dirname(file))}/settings.json saved`, () => {
    try {
      return JSON.stringify(JSON.parse(readFileSync(file, "utf8"))) === JSON.stringify(settings);
    } catch {
      return false;
    }
  }, 30_000);
  await openFile("shapes.py");
}

/** Back to the file, cursor at its end. */
async function focusEditor() {
  await page.click(".editor-instance .monaco-editor .view-lines");
  await page.keyboard.down("Control");
  await page.keyboard.press("End");
  await page.keyboard.up("Control");
}

/**
 * The ghost text VS Code shows in the active editor, as text: the DOM renders spaces
 * as no-break spaces and control characters (a tiny random model emits some) as
 * their Unicode "control pictures" (U+2400 + code).
 */
async function ghostText() {
  const rendered = await page.$$eval(
    ".editor-instance .monaco-editor .ghost-text-decoration, .editor-instance .monaco-editor .ghost-text",
    (spans) => spans.map((s) => s.textContent ?? "").join(""),
  );
  return rendered
    .replace(/\u00a0/g, " ")
    .replace(/[\u2400-\u241f]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0x2400))
    .replace(/\u2421/g, "\u007f");
}

/** Type `text` on a new last line, keystroke by keystroke; wait for ghost text; Tab; check the file. */
async function completeAndAccept(text, wordStartColumn) {
  await focusEditor();
  await page.keyboard.type(text, { delay: 70 });
  log(`typed ${JSON.stringify(text)} (the cursor is inside the word that starts at column ${wordStartColumn})`);
  let shown = "";
  await until("ghost text after typing mid-word", async () => {
    const first = await ghostText();
    if (!first.trim()) return false;
    await new Promise((r) => setTimeout(r, 300)); // the same text twice: not mid-update
    shown = await ghostText();
    return shown === first;
  });
  log(`ghost text: ${JSON.stringify(shown)}`);
  const before = readFileSync(FILE, "utf8");
  await page.keyboard.press("Tab");
  await page.keyboard.down("Control");
  await page.keyboard.press("KeyS");
  await page.keyboard.up("Control");
  const saved = await until("the document saved after Tab", () => {
    const now = readFileSync(FILE, "utf8");
    return now !== before && now.trimEnd().endsWith((text + shown).trimEnd()) ? now : false;
  }, 30_000);
  const lastLine = saved.trimEnd().split("\n").pop();
  if (lastLine !== (text + shown).trimEnd())
    throw new Error(`after Tab the line is ${JSON.stringify(lastLine)}, expected ${JSON.stringify(text + shown)}`);
  log(`Tab inserted exactly the ghost text: ${JSON.stringify(lastLine)}`);
  await page.keyboard.press("End");
  await page.keyboard.press("Enter");
}

async function keepArtifacts(error) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const base = path.join(ARTIFACTS, `failure-${stamp}`);
  try {
    if (page) {
      await page.screenshot({ path: `${base}.png`, fullPage: true });
      const status = await statusItem().catch(() => null);
      writeFileSync(`${base}.status.json`, JSON.stringify(status, null, 2));
      // the Codetailor output channel, where the extension and the server log
      await command("Codetailor: Show Server Log").catch(() => {});
      await new Promise((r) => setTimeout(r, 1500));
      await page.screenshot({ path: `${base}-log.png`, fullPage: true });
    }
  } catch (e) {
    console.error(`(could not take screenshots: ${e})`);
  }
  writeFileSync(`${base}.code-server.log`, codeServerLog);
  try {
    writeFileSync(`${base}.Codetailor.log`, serverLog());
  } catch {}
  writeFileSync(`${base}.error.txt`, String(error?.stack ?? error));
  if (existsSync(FILE)) writeFileSync(`${base}.shapes.py`, readFileSync(FILE));
  console.error(`e2e: artifacts in ${ARTIFACTS} (${path.basename(base)}.*)`);
}

let failed = false;
try {
  await main();
  log("PASS");
} catch (error) {
  failed = true;
  console.error(`e2e: FAIL: ${error?.message ?? error}`);
  await keepArtifacts(error);
} finally {
  await browser?.close().catch(() => {});
  codeServer?.kill();
  engine?.kill();
  for (const pid of serverPids(dirs.model)) {
    try {
      process.kill(pid);
    } catch {}
  }
  if (!env.CODETAILOR_E2E_KEEP) {
    // The servers just told to stop may still write their logs there for a moment.
    try {
      rmSync(tmp, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    } catch (error) {
      console.error(`e2e: could not remove ${tmp}: ${error}`);
    }
  }
}
process.exit(failed ? 1 : 0);
