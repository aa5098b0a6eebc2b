/**
 * A progress bar on stderr for the examples: a bar, the amount done, the rate and the time
 * left. Redraws in place on a terminal; prints a line per 10% otherwise (logs, CI).
 * @module
 */

/** Formats bytes as KB/MB/GB. */
export function formatBytes(n: number): string {
  if (n < 1e3) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} KB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

/** A progress bar for `label`; call `update(done, total)` as work proceeds, `end()` once done. */
export function progressBar(label: string, unit: (n: number) => string = formatBytes): {
  update(done: number, total: number): void;
  end(): void;
} {
  const tty = Deno.stderr.isTerminal();
  const start = performance.now();
  const enc = new TextEncoder();
  let lastTenth = -1;
  let last = "";
  return {
    update(done, total) {
      const secs = (performance.now() - start) / 1000;
      const rate = done / Math.max(secs, 1e-3);
      const frac = total > 0 ? Math.min(1, done / total) : 0;
      const eta = rate > 0 ? (total - done) / rate : 0;
      const width = 24;
      const bar = "#".repeat(Math.round(frac * width)).padEnd(width, ".");
      last = `${label} [${bar}] ${unit(done)} / ${unit(total)}, ${unit(rate)}/s, ` +
        `ETA ${eta.toFixed(0)} s`;
      if (tty) Deno.stderr.writeSync(enc.encode(`\r${last}\x1b[K`));
      else if (Math.floor(frac * 10) > lastTenth) {
        lastTenth = Math.floor(frac * 10);
        console.error(last);
      }
    },
    end() {
      if (tty) Deno.stderr.writeSync(enc.encode("\n"));
    },
  };
}
