/** Small text helpers for the CLI's human-readable output. */

export function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Milliseconds with precision that suits their size (microsecond-scale latencies stay readable). */
export function ms(n: number): string {
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  if (n >= 1) return n.toFixed(2);
  return n.toFixed(3);
}

/** Ops/s as TOPS with 3 significant digits (CPU figures are hundredths to tenths of a TOPS). */
export function tops(opsPerSec: number): string {
  return `${(opsPerSec / 1e12).toPrecision(3)} TOPS`;
}

export function pct(ratio: number): string {
  return `${(ratio * 100).toFixed(1)} %`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Left-aligned columns; every row must have as many cells as the header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** A GitHub-flavoured markdown table. */
export function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * Progress on stderr, only when it is a terminal: piped or captured output (CI, --json consumers)
 * stays free of carriage-return noise.
 */
export class ProgressLine {
  private readonly enabled = process.stderr.isTTY === true;
  private shown = false;

  update(text: string): void {
    if (!this.enabled) return;
    process.stderr.write(`\r\x1b[K${text}`);
    this.shown = true;
  }

  clear(): void {
    if (this.enabled && this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}
