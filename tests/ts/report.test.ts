import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { escapeHtml, writeReport } from '../../src/report.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-report-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function render(name: string, r: Parameters<typeof writeReport>[1]): string {
  const p = path.join(tmp, name);
  writeReport(p, r);
  return fs.readFileSync(p, 'utf8');
}

test('loss chart: one path point per loss row, eval markers, axes, self-contained', () => {
  const metrics: Array<{ step: number; loss?: number; eval_loss?: number; lr?: number }> = [];
  for (let step = 10; step <= 200; step += 10) metrics.push({ step, loss: 8 * Math.exp(-step / 60) + 2 + (step % 30 === 0 ? 0.3 : 0), lr: 3e-4 });
  metrics.push({ step: 100, eval_loss: 3.1 }, { step: 200, eval_loss: 2.4 });
  const html = render('a.html', {
    title: 'run 1',
    metrics,
    summary: { steps: 200, 'final loss': 2.0507, tokens: 123456789 },
    config: { model: { hidden_size: 64 }, train: { lr: 3e-4 } },
  });
  assert.match(html, /^<!DOCTYPE html>/);
  assert.doesNotMatch(html, /<script|<link|\bsrc=|href=/i, 'no scripts or external assets');
  const svgs = html.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
  assert.equal(svgs.length, 1);
  const svg = svgs[0];

  const d = /<path class="train-loss" d="([^"]+)"/.exec(svg)?.[1];
  assert.ok(d !== undefined);
  const pts = [...d.matchAll(/[ML]([-\d.]+),([-\d.]+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
  const lossRows = metrics.filter((m) => m.loss !== undefined);
  assert.equal(pts.length, lossRows.length);
  // x grows with step; higher loss is drawn higher (smaller SVG y).
  for (let i = 1; i < pts.length; i++) {
    assert.ok(pts[i][0] > pts[i - 1][0]);
    const dl = lossRows[i].loss! - lossRows[i - 1].loss!;
    assert.ok(Math.sign(pts[i - 1][1] - pts[i][1]) === Math.sign(dl), `point ${i}`);
  }
  const circles = svg.match(/<g class="eval-loss"[\s\S]*?<\/g>/)?.[0].match(/<circle /g) ?? [];
  assert.equal(circles.length, 2);
  assert.match(svg, /train loss/);
  assert.match(svg, /eval loss/);

  // y tick labels cover the data range (losses and eval losses), within a quarter of it at each end.
  const ys = metrics.flatMap((m) => [m.loss, m.eval_loss]).filter((v): v is number => v !== undefined);
  const lo = Math.min(...ys);
  const hi = Math.max(...ys);
  const q = (hi - lo) / 4;
  const yTicks = [...svg.matchAll(/text-anchor="end" dominant-baseline="middle">([^<]+)</g)].map((m) => Number(m[1]));
  assert.ok(yTicks.length >= 3);
  assert.ok(Math.min(...yTicks) >= lo - q && Math.min(...yTicks) <= lo + q, `${yTicks} vs [${lo}, ${hi}]`);
  assert.ok(Math.max(...yTicks) >= hi - q && Math.max(...yTicks) <= hi + q, `${yTicks} vs [${lo}, ${hi}]`);
  const xTicks = [...svg.matchAll(/text-anchor="middle">([\d.e+]+)</g)].map((m) => Number(m[1]));
  assert.ok(xTicks.includes(100) && xTicks.includes(200), `${xTicks}`);

  assert.match(html, /<th>tokens<\/th><td>123456789<\/td>/);
  assert.match(html, /<th>final loss<\/th><td>2.0507<\/td>/);
  assert.match(html, /&quot;hidden_size&quot;: 64/);
});

test('all strings are escaped', () => {
  const evil = '<script>alert("x")</script> & \'q\'';
  const html = render('b.html', {
    title: evil,
    metrics: [{ step: 1, loss: 1 }],
    summary: { [evil]: evil },
    config: { note: '</pre><img src=x>' },
  });
  assert.doesNotMatch(html, /<script|<img/);
  assert.ok(html.includes(`<title>${escapeHtml(evil)}</title>`));
  assert.ok(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;'));
  assert.ok(html.includes('&lt;/pre&gt;&lt;img src=x&gt;'));
  assert.equal(escapeHtml('a<b>&"\''), 'a&lt;b&gt;&amp;&quot;&#39;');
  // A single loss row still draws a one-point path.
  const d = /<path class="train-loss" d="([^"]+)"/.exec(html)?.[1] ?? '';
  assert.equal((d.match(/[ML]/g) ?? []).length, 1);
});

test('empty metrics say so and draw no chart', () => {
  const html = render('c.html', { title: 't', metrics: [], summary: {}, config: null });
  assert.match(html, /no steps logged/);
  assert.doesNotMatch(html, /<svg/);
  const html2 = render('d.html', { title: 't', metrics: [{ step: 5, lr: 1e-3 }], summary: {}, config: {} });
  assert.match(html2, /no loss values logged/);
});
