/**
 * The extension's settings and what the server receives from them.
 *
 * Pure: no `vscode` import, so it is unit-tested with node's test runner.
 * The server reads camelCase keys from `initializationOptions` and
 * `workspace/didChangeConfiguration`; an empty string means "the server's default"
 * and is sent as null.
 */

export type Multiline = "auto" | "always" | "never";

export interface Settings {
  /** The executable that runs the server (`codetailor`, or a Python interpreter). */
  serverCommand: string;
  /** Its arguments; they must contain `serve` (what comes before it is reused for `finetune`). */
  serverArgs: string[];
  model: string;
  adapter: string;
  device: string;
  dtype: string;
  maxTokens: number;
  multiline: Multiline;
  timeBudgetMs: number;
  /** Most milliseconds to the first token (the prompt's prefill). */
  firstTokenTimeoutMs: number;
  enable: boolean;
  promptFormat: string;
  /** Snippets of other workspace files in the prompt. */
  context: boolean;
  /** `local`, or `openai:http(s)://HOST:PORT` for an OpenAI-compatible server. */
  engine: string;
  /** A local log of shown and accepted suggestions (never sent anywhere). */
  feedback: boolean;
  quietness: number;
  nextEdit: boolean;
  nextEditDebounceMs: number;
  nextEditWindowLines: number;
  nextEditFormat: string;
  /** Sent as `initializationOptions.authToken` (for a server on a non-loopback TCP address). */
  authToken: string;
  /** Show only a gutter mark for a next edit until Tab jumps there (the extension's own; not sent). */
  nextEditIndicatorOnly: boolean;
}

export const DEFAULTS: Readonly<Settings> = Object.freeze({
  serverCommand: "codetailor",
  serverArgs: ["serve"],
  model: "",
  adapter: "auto",
  device: "auto",
  dtype: "auto",
  maxTokens: 64,
  multiline: "auto",
  timeBudgetMs: 2000,
  firstTokenTimeoutMs: 8000,
  enable: true,
  promptFormat: "",
  context: true,
  engine: "local",
  feedback: true,
  quietness: 25,
  nextEdit: true,
  nextEditDebounceMs: 300,
  nextEditWindowLines: 10,
  nextEditFormat: "",
  authToken: "",
  nextEditIndicatorOnly: false,
});

/** What the server understands: camelCase, null for "use your default". */
export interface ServerSettings {
  model: string | null;
  adapter: string | null;
  device: string;
  dtype: string;
  maxTokens: number;
  multiline: Multiline;
  timeBudgetMs: number;
  firstTokenTimeoutMs: number;
  enable: boolean;
  promptFormat: string | null;
  context: boolean;
  engine: string;
  feedback: boolean;
  quietness: number;
  nextEdit: boolean;
  nextEditDebounceMs: number;
  nextEditWindowLines: number;
  nextEditFormat: string | null;
}

/** A getter shaped like `vscode.WorkspaceConfiguration.get`, so this module stays pure. */
export type Getter = (key: string) => unknown;

const MULTILINE: readonly Multiline[] = ["auto", "always", "never"];

function text(value: unknown, fallback: string): string {
  return typeof value === "string" ? value.trim() : fallback;
}

function whole(value: unknown, fallback: number, low: number, high: number): number {
  if (typeof value !== "number" || !Number.isFinite(value)) return fallback;
  return Math.min(high, Math.max(low, Math.round(value)));
}

/**
 * Read the `codetailor.*` settings through `get`, replacing a value of the wrong
 * type by its default and clamping numbers to what the server accepts.
 * `problems` collects one line per replaced value, for the output channel.
 */
export function readSettings(get: Getter, problems: string[] = []): Settings {
  const pick = <T>(key: keyof Settings, check: (v: unknown) => T | undefined): T => {
    const raw = get(key);
    if (raw === undefined || raw === null) return DEFAULTS[key] as T;
    const value = check(raw);
    if (value === undefined) {
      problems.push(`codetailor.${key}: ${JSON.stringify(raw)} is invalid; using the default`);
      return DEFAULTS[key] as T;
    }
    return value;
  };
  const str = (v: unknown) => (typeof v === "string" ? v.trim() : undefined);
  const bool = (v: unknown) => (typeof v === "boolean" ? v : undefined);
  const num = (low: number, high: number) => (v: unknown) =>
    typeof v === "number" && Number.isFinite(v) ? whole(v, 0, low, high) : undefined;
  return {
    serverCommand: pick("serverCommand", (v) => (str(v) ? str(v) : undefined)),
    serverArgs: pick("serverArgs", (v) =>
      Array.isArray(v) && v.every((a) => typeof a === "string") ? [...v] : undefined,
    ),
    model: pick("model", str),
    adapter: pick("adapter", str),
    device: pick("device", (v) => str(v) || undefined),
    dtype: pick("dtype", (v) => str(v) || undefined),
    maxTokens: pick("maxTokens", num(1, 1024)),
    multiline: pick("multiline", (v) =>
      MULTILINE.includes(v as Multiline) ? (v as Multiline) : undefined,
    ),
    timeBudgetMs: pick("timeBudgetMs", num(50, 60_000)),
    firstTokenTimeoutMs: pick("firstTokenTimeoutMs", num(100, 120_000)),
    enable: pick("enable", (v) => (typeof v === "boolean" ? v : undefined)),
    promptFormat: pick("promptFormat", str),
    context: pick("context", (v) => (typeof v === "boolean" ? v : undefined)),
    engine: pick("engine", (v) => str(v) || undefined),
    feedback: pick("feedback", (v) => (typeof v === "boolean" ? v : undefined)),
    quietness: pick("quietness", num(0, 95)),
    nextEdit: pick("nextEdit", (v) => (typeof v === "boolean" ? v : undefined)),
    nextEditDebounceMs: pick("nextEditDebounceMs", num(0, 10_000)),
    nextEditWindowLines: pick("nextEditWindowLines", num(1, 100)),
    nextEditFormat: pick("nextEditFormat", str),
    authToken: pick("authToken", (v) => text(v, "")),
    nextEditIndicatorOnly: pick("nextEditIndicatorOnly", bool),
  };
}

/** The settings as the server names them (`workspace/didChangeConfiguration`). */
export function toServerSettings(s: Settings): ServerSettings {
  const orNull = (v: string) => (v === "" ? null : v);
  return {
    model: orNull(s.model),
    adapter: orNull(s.adapter),
    device: s.device,
    dtype: s.dtype,
    maxTokens: s.maxTokens,
    multiline: s.multiline,
    timeBudgetMs: s.timeBudgetMs,
    firstTokenTimeoutMs: s.firstTokenTimeoutMs,
    enable: s.enable,
    promptFormat: orNull(s.promptFormat),
    context: s.context,
    engine: s.engine,
    feedback: s.feedback,
    quietness: s.quietness,
    nextEdit: s.nextEdit,
    nextEditDebounceMs: s.nextEditDebounceMs,
    nextEditWindowLines: s.nextEditWindowLines,
    nextEditFormat: orNull(s.nextEditFormat),
  };
}

/**
 * `initializationOptions`: the server settings, that this extension draws next edits
 * itself (nextEdit.ts: an empty completion need not wait for one drawn as inline text),
 * plus the auth token when there is one.
 */
export function initializationOptions(
  s: Settings,
): ServerSettings & { drawsNextEdits: true; authToken?: string } {
  const options: ServerSettings & { drawsNextEdits: true; authToken?: string } = {
    ...toServerSettings(s),
    drawsNextEdits: true,
  };
  if (s.authToken) options.authToken = s.authToken;
  return options;
}

/**
 * The settings that make the server's command line. They are machine-scoped
 * (`"scope": "machine"` in package.json): VS Code reads them from the settings of
 * the machine the extension runs on — in a remote window (code-server, Remote-SSH,
 * WSL, Dev Containers, Codespaces) the Remote settings, never the local User
 * settings nor a workspace's. A change to one needs a new server process.
 */
export const RESTART_KEYS = ["serverCommand", "serverArgs", "authToken"] as const;
export type RestartKey = (typeof RESTART_KEYS)[number];

/**
 * The settings a workspace may not set: the server's command line, and the server
 * settings that reach the network, load code or weights, or name files (the server's
 * schema marks them `"scope": "machine"`; tests/test_settings_schema.py keeps this list
 * equal to it). A repository's `.vscode/settings.json` must not pick the engine that
 * receives the user's code and API key, nor a model or adapter inside the repository:
 * these are read from the user's (or Remote) settings and the defaults alone.
 */
export const MACHINE_KEYS = ["serverCommand", "serverArgs", "authToken", "model", "adapter", "engine"] as const;

/** The parts of `WorkspaceConfiguration.inspect(key)` used here. */
export interface Inspected {
  defaultValue?: unknown;
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

function isMachineScoped(key: string): boolean {
  return (MACHINE_KEYS as readonly string[]).includes(key);
}

/**
 * The value VS Code applies for `codetailor.<key>`: the most specific scope that
 * holds one and applies to the key. Workspace and folder values of a
 * machine-scoped setting are ignored (VS Code shows them greyed out).
 */
export function effectiveValue(key: string, inspected: Inspected | undefined): unknown {
  if (!inspected) return undefined;
  const scopes = isMachineScoped(key)
    ? [inspected.globalValue]
    : [inspected.workspaceFolderValue, inspected.workspaceValue, inspected.globalValue];
  return scopes.find((v) => v !== undefined) ?? inspected.defaultValue;
}

/** Where the applied value of `key` comes from, for the log; `remote`: the window's remote name, if any. */
export function settingSource(key: string, inspected: Inspected | undefined, remote?: string): string {
  if (!inspected) return "default";
  if (!isMachineScoped(key)) {
    if (inspected.workspaceFolderValue !== undefined) return "folder settings";
    if (inspected.workspaceValue !== undefined) return "workspace settings";
  }
  if (inspected.globalValue !== undefined) return remote ? "Remote settings" : "User settings";
  return "default";
}

/**
 * The settings after a configuration change event. A restart setting keeps its
 * previous value unless the event `affects` it: in a remote window VS Code may
 * answer differently for an untouched machine-scoped setting once any setting
 * changes (the first read saw the local User value, later ones the default), and
 * turning completions off must not restart the server with another command.
 */
export function afterChange(previous: Settings, fresh: Settings, affects: (key: string) => boolean): Settings {
  const next = { ...fresh };
  for (const key of RESTART_KEYS) {
    if (!affects(key)) (next as Record<RestartKey, unknown>)[key] = previous[key];
  }
  return next;
}

export interface SettingChange {
  key: keyof Settings;
  from: string;
  to: string;
}

/** The settings among `keys` that differ between `a` and `b`, shown for the log (the token masked). */
export function settingChanges(a: Settings, b: Settings, keys: readonly (keyof Settings)[] = ALL_KEYS): SettingChange[] {
  const show = (key: keyof Settings, s: Settings): string => {
    if (key === "authToken") return s.authToken ? "(a token)" : "(none)";
    return JSON.stringify(s[key]);
  };
  return keys
    .filter((key) => JSON.stringify(a[key]) !== JSON.stringify(b[key]))
    .map((key) => ({ key, from: show(key, a), to: show(key, b) }));
}

const ALL_KEYS = Object.keys(DEFAULTS) as (keyof Settings)[];

/** The restart settings that differ between `a` and `b`. */
export function restartChanges(a: Settings, b: Settings): SettingChange[] {
  return settingChanges(a, b, RESTART_KEYS);
}

/** Whether a change from `a` to `b` needs a new server process (not just new settings). */
export function needsRestart(a: Settings, b: Settings): boolean {
  return restartChanges(a, b).length > 0;
}
