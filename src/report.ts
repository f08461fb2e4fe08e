// One self-contained HTML report of a run: summary table, an inline SVG loss chart, the config.
// No scripts, no external assets; every string from the run is HTML-escaped.

import fs from 'node:fs';

export interface ReportMetric {
  step: number;
  loss?: number;
  eval_loss?: number;
  lr?: number;
  [k: string]: unknown;
}

export interface ReportInput {
  title: string;
  metrics: ReportMetric[];
  summary: Record<string, string | number>;
  config: unknown;
}

export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const W = 720;
const H = 360;
const M = { left: 64, right: 20, top: 20, bottom: 48 };
const TRAIN_COLOR = '#1f6feb';
const EVAL_COLOR = '#d1242f';

/** About `count` round tick values covering [lo, hi] (1, 2, 5 × 10^k steps). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
  return String(Number(v.toPrecision(6)));
}

function finite(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function lossChart(metrics: ReportMetric[]): string {
  const train = metrics.filter((m) => finite(m.step) && finite(m.loss)).map((m) => [m.step, m.loss as number]);
  const evals = metrics
    .filter((m) => finite(m.step) && finite(m.eval_loss))
    .map((m) => [m.step, m.eval_loss as number]);
  const all = [...train, ...evals];
  if (all.length === 0) return '<p class="empty">no loss values logged</p>';

  let x0 = Math.min(...all.map((p) => p[0]));
  let x1 = Math.max(...all.map((p) => p[0]));
  let y0 = Math.min(...all.map((p) => p[1]));
  let y1 = Math.max(...all.map((p) => p[1]));
  if (x1 === x0) {
    x0 -= 1;
    x1 += 1;
  }
  const pad = y1 > y0 ? (y1 - y0) * 0.05 : Math.max(Math.abs(y0) * 0.05, 0.5);
  y0 -= pad;
  y1 += pad;

  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (x: number): string => (M.left + ((x - x0) / (x1 - x0)) * pw).toFixed(2);
  const sy = (y: number): string => (M.top + (1 - (y - y0) / (y1 - y0)) * ph).toFixed(2);

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `role="img" aria-label="loss vs step">`,
  );
  parts.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="#fff" stroke="#888"/>`);
  const axis: string[] = [];
  for (const t of niceTicks(y0, y1)) {
    const y = sy(t);
    axis.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    axis.push(`<text x="${M.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(x0, x1)) {
    const x = sx(t);
    axis.push(`<line x1="${x}" x2="${x}" y1="${M.top + ph}" y2="${M.top + ph + 5}" stroke="#888"/>`);
    axis.push(`<text x="${x}" y="${M.top + ph + 18}" text-anchor="middle">${fmt(t)}</text>`);
  }
  parts.push(`<g class="axes" font-size="11" fill="#333">${axis.join('')}</g>`);
  parts.push(`<text x="${M.left + pw / 2}" y="${H - 8}" text-anchor="middle" font-size="12">step</text>`);
  parts.push(
    `<text x="14" y="${M.top + ph / 2}" text-anchor="middle" font-size="12" ` +
      `transform="rotate(-90 14 ${M.top + ph / 2})">loss</text>`,
  );

  if (train.length > 0) {
    const d = train.map((p, i) => `${i === 0 ? 'M' : 'L'}${sx(p[0])},${sy(p[1])}`).join(' ');
    parts.push(`<path class="train-loss" d="${d}" fill="none" stroke="${TRAIN_COLOR}" stroke-width="1.5"/>`);
  }
  if (evals.length > 0) {
    const dots = evals.map((p) => `<circle cx="${sx(p[0])}" cy="${sy(p[1])}" r="3.5"/>`).join('');
    parts.push(`<g class="eval-loss" fill="${EVAL_COLOR}">${dots}</g>`);
  }

  const lx = M.left + pw - 130;
  const ly = M.top + 10;
  parts.push(
    `<g class="legend" font-size="11">` +
      `<rect x="${lx}" y="${ly}" width="120" height="40" fill="#fff" stroke="#ccc"/>` +
      `<line x1="${lx + 8}" x2="${lx + 28}" y1="${ly + 13}" y2="${ly + 13}" stroke="${TRAIN_COLOR}" stroke-width="2"/>` +
      `<text x="${lx + 34}" y="${ly + 13}" dominant-baseline="middle">train loss</text>` +
      `<circle cx="${lx + 18}" cy="${ly + 29}" r="3.5" fill="${EVAL_COLOR}"/>` +
      `<text x="${lx + 34}" y="${ly + 29}" dominant-baseline="middle">eval loss</text>` +
      `</g>`,
  );
  parts.push('</svg>');
  return parts.join('\n');
}

function configText(config: unknown): string {
  try {
    return JSON.stringify(config, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) ?? String(config);
  } catch {
    return String(config);
  }
}

/** Renders the report as an HTML string. */
export function renderReport(r: ReportInput): string {
  const title = escapeHtml(r.title);
  const rows = Object.entries(r.summary)
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(typeof v === 'number' && !Number.isInteger(v) ? fmt(v) : String(v))}</td></tr>`)
    .join('\n');
  const chart = r.metrics.length === 0 ? '<p class="empty">no steps logged</p>' : lossChart(r.metrics);
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${title}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f6f8fa; }
pre { background: #f6f8fa; padding: 1em; overflow: auto; }
.empty { color: #888; font-style: italic; }
</style>
</head>
<body>
<h1>${title}</h1>
<h2>Summary</h2>
<table>
${rows}
</table>
<h2>Loss</h2>
${chart}
<h2>Config</h2>
<pre>${escapeHtml(configText(r.config))}</pre>
</body>
</html>
`;
}

export function writeReport(path: string, r: ReportInput): void {
  fs.writeFileSync(path, renderReport(r));
}
