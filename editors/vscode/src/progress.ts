/**
 * Reading `codetailor finetune`'s output: its progress bar on stderr and its
 * JSON summary on stdout. Pure: no `vscode` import.
 */

export interface Progress {
  percentage: number;
  /** The bar's text without the bar itself, e.g. `45/100 [00:10<00:12, 4.5it/s]`. */
  message: string;
}

/**
 * The last progress report in a chunk of stderr. A tqdm bar redraws itself with
 * carriage returns: `train:  45%|████▌     | 45/100 [00:10<00:12, 4.5it/s]`.
 */
export function parseProgress(chunk: string): Progress | undefined {
  const pieces = chunk.split(/[\r\n]+/).filter((p) => p.trim());
  for (let i = pieces.length - 1; i >= 0; i--) {
    const m = /^(.*?)(\d{1,3})%\|[^|]*\|\s*(.*)$/.exec(pieces[i]!.trim());
    if (m) {
      const label = m[1]!.trim().replace(/:$/, "");
      const rest = m[3]!.trim();
      return {
        percentage: Math.min(100, Number(m[2])),
        message: label ? `${label}: ${rest}` : rest,
      };
    }
  }
  return undefined;
}

/** The JSON summary `finetune --json` prints: the last stdout line that is a JSON object. */
export function parseSummary(stdout: string): Record<string, unknown> | undefined {
  const lines = stdout.split(/\r?\n/).filter((l) => l.trim().startsWith("{"));
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const value: unknown = JSON.parse(lines[i]!);
      if (value && typeof value === "object" && !Array.isArray(value)) {
        return value as Record<string, unknown>;
      }
    } catch {
      // not JSON after all: keep looking
    }
  }
  return undefined;
}

/** The last non-empty line of stderr that is not a progress bar: the error, usually. */
export function lastErrorLine(stderr: string): string {
  const lines = stderr
    .split(/[\r\n]+/)
    .map((l) => l.trim())
    .filter((l) => l && !/\d{1,3}%\|/.test(l));
  return lines[lines.length - 1] ?? "";
}
