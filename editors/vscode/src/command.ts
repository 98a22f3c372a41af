/**
 * The processes the extension starts: `codetailor serve` and `codetailor finetune`.
 *
 * Pure: no `vscode` import. The server command comes from `codetailor.serverCommand`
 * and `codetailor.serverArgs`; `finetune` reuses everything before `serve` in the
 * arguments, so `python -m lsp_server.cli serve` gives `python -m lsp_server.cli finetune`.
 */

import type { Settings } from "./settings";

export interface Invocation {
  command: string;
  args: string[];
}

/** The command that starts the language server on stdio. */
export function serverInvocation(s: Settings): Invocation {
  return { command: s.serverCommand, args: [...s.serverArgs] };
}

/** Arguments before the `serve` subcommand (e.g. `-m lsp_server.cli`). */
export function cliPrefix(args: readonly string[]): string[] {
  const at = args.indexOf("serve");
  return at < 0 ? [] : args.slice(0, at);
}

/** `codetailor finetune REPO --out DIR --json [--model M]` for the configured CLI. */
export function finetuneInvocation(s: Settings, repo: string, outDir: string): Invocation {
  const args = [...cliPrefix(s.serverArgs), "finetune", repo, "--out", outDir, "--json"];
  if (s.model) args.push("--model", s.model);
  return { command: s.serverCommand, args };
}

/** A file-system-safe adapter folder name: `<workspace>-<YYYYMMDD-HHMMSS>`. */
export function adapterFolderName(workspace: string, now: Date): string {
  const safe = workspace.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "") || "workspace";
  const pad = (n: number) => String(n).padStart(2, "0");
  const stamp =
    `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-` +
    `${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
  return `${safe}-${stamp}`;
}

/** One line, as a shell would show it (for logs and error messages). */
export function describe(inv: Invocation): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return [inv.command, ...inv.args].map(quote).join(" ");
}
