// progress.ts — one log line per logged step, the same in every mode, and a progress bar only on a TTY.
export function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export interface StepLog {
  step: number;
  steps: number;
  loss: number;
  gradNorm: number;
  lr: number;
  ms: number;
  tokPerS: number;
  mfu: number | null;
}

export function formatStep(s: StepLog): string {
  const w = String(s.steps).length;
  return (
    `step ${String(s.step).padStart(w)}/${s.steps} | loss ${s.loss.toFixed(4)} | grad norm ${s.gradNorm.toFixed(3)} | ` +
    `lr ${s.lr.toExponential(2)} | ${s.ms.toFixed(0)} ms | ${Math.round(s.tokPerS)} tok/s | ` +
    `MFU ${s.mfu === null ? 'n/a' : (100 * s.mfu).toFixed(1) + '%'}`
  );
}

export class ProgressBar {
  private readonly tty = Boolean(process.stdout.isTTY);
  private shown = false;

  update(done: number, total: number, text: string, etaS: number): void {
    if (!this.tty) return;
    const width = 24;
    const fill = Math.round((width * done) / Math.max(1, total));
    const line = `[${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${text} | ETA ${fmtDuration(etaS)}`;
    process.stdout.write(`\r\x1b[2K${line.slice(0, (process.stdout.columns ?? 120) - 1)}`);
    this.shown = true;
  }

  // Prints a permanent line above the bar.
  log(line: string): void {
    if (this.shown) process.stdout.write('\r\x1b[2K');
    process.stdout.write(line + '\n');
    this.shown = false;
  }

  done(): void {
    if (this.shown) process.stdout.write('\r\x1b[2K');
    this.shown = false;
  }
}
