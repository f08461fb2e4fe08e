// report.ts — what each prep stage did: documents and bytes in and out, why documents were dropped, time
// and throughput; printed as a table and saved as prep_report.json.
export interface StageStats {
  stage: string;
  source: string;
  docs_in: number;
  docs_out: number;
  bytes_in: number;
  bytes_out: number;
  seconds: number;
  reasons: Record<string, number>; // drop reason → documents
  extra?: Record<string, unknown>;
}

export function newStats(stage: string, source: string): StageStats {
  return { stage, source, docs_in: 0, docs_out: 0, bytes_in: 0, bytes_out: 0, seconds: 0, reasons: {} };
}

export function countReason(s: StageStats, reason: string, n = 1): void {
  s.reasons[reason] = (s.reasons[reason] ?? 0) + n;
}

function mb(n: number): string {
  return (n / 1e6).toFixed(n < 1e7 ? 2 : 1);
}

export function topReasons(s: StageStats, k = 3): string {
  return Object.entries(s.reasons)
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([r, n]) => `${r} ${n}`)
    .join(', ');
}

export function formatStageTable(rows: StageStats[]): string {
  const head = ['stage', 'source', 'docs in', 'docs out', 'dropped', 'MB in', 'MB out', 'time', 'MB/s', 'top drop reasons'];
  const body = rows.map((s) => [
    s.stage,
    s.source,
    String(s.docs_in),
    String(s.docs_out),
    s.docs_in ? `${((100 * (s.docs_in - s.docs_out)) / s.docs_in).toFixed(1)}%` : '-',
    mb(s.bytes_in),
    mb(s.bytes_out),
    `${s.seconds.toFixed(2)} s`,
    s.seconds > 0 ? (s.bytes_in / 1e6 / s.seconds).toFixed(1) : '-',
    topReasons(s),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => (i < 2 || i === r.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt)].join('\n');
}
