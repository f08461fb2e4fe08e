// `ko-train prep` end to end: every stage's counts, near-duplicate clusters, rejects with reasons, resume
// after an interruption, bad input, mixing in training with exact resume, and `ko-train lm`.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { test } from 'node:test';
import { lmNormalize, lmNormalizeBatch } from '../../src/lm.js';
import { packDocs } from '../../src/prep/documents.js';
import { prepNative } from '../../src/prep/native_prep.js';
import { readMetrics, runCli, runCliKilledAt, tinyModel, tmpDir, writeJson } from './cliHelpers.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const SYL = '가나다라마바사아자차카타파하고노도로모보소오조초코토포호구누두루무부수우주추쿠투푸후기니디리미비시이지치키티피히'.split('');

function koWord(r: () => number): string {
  const n = 2 + Math.floor(r() * 3);
  let w = '';
  for (let i = 0; i < n; i++) w += SYL[Math.floor(r() * SYL.length)];
  return w;
}

function koDoc(r: () => number, sentences: number): string {
  const lines: string[] = [];
  for (let s = 0; s < sentences; s++) {
    const words = Array.from({ length: 6 + Math.floor(r() * 6) }, () => koWord(r));
    lines.push(words.join(' ') + '습니다.');
  }
  return lines.join('\n');
}

const EN_WORDS = 'the of and to with that have be data table cell sheet value formula chart menu dialog insert format document page style text number column row select click choose option window file open save print'.split(' ');
function enDoc(r: () => number, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(EN_WORDS[Math.floor(r() * EN_WORDS.length)] + (i % 12 === 11 ? '.' : ''));
  return out.join(' ') + '.';
}

// A Korean source with planted problems and an English one; returns the files.
function writeCorpus(dir: string) {
  const r = rng(11);
  const ko: string[] = [];
  for (let i = 0; i < 60; i++) ko.push(JSON.stringify({ id: `ko-${i}`, text: koDoc(r, 4 + (i % 5)) }));
  // A near duplicate of ko-3: one word of ~50 changed (Jaccard of 5-char shingles ~0.9).
  const base = JSON.parse(ko[3]).text as string;
  const ws = base.split(' ');
  ws[5] = '바뀐말';
  ko.push(JSON.stringify({ id: 'ko-3-near', text: ws.join(' ') }));
  ko.push(JSON.stringify({ id: 'ko-7-exact', text: JSON.parse(ko[7]).text + '  ' })); // exact after normalization
  ko.push(JSON.stringify({ id: 'ko-english', text: 'This page is only in English, so the Korean ratio rule drops it. It has enough words to pass the others.' }));
  ko.push(JSON.stringify({ id: 'ko-headings', text: '표 만들기\n메뉴\n서식' })); // no sentence ends
  ko.push('{"id": "broken", "text": '); // malformed
  ko.push(JSON.stringify({ id: 'no-text', body: 'x' }));
  const en: string[] = [];
  for (let i = 0; i < 40; i++) en.push(JSON.stringify({ id: `en-${i}`, text: enDoc(r, 80 + (i % 7) * 10) }));
  en.push(JSON.stringify({ id: 'en-short', text: 'Too short to keep.' }));
  const koFile = path.join(dir, 'ko.jsonl'), enFile = path.join(dir, 'en.jsonl.gz');
  fs.writeFileSync(koFile, ko.join('\n') + '\n');
  fs.writeFileSync(enFile, zlib.gzipSync(en.join('\n') + '\n'));
  return { koFile, enFile };
}

function prepConfig(dir: string, extra: Record<string, unknown> = {}) {
  const { koFile, enFile } = writeCorpus(dir);
  return writeJson(path.join(dir, 'prep.yaml'), {
    run: { out_dir: path.join(dir, 'out'), stages: ['prep'], seed: 5, threads: 2 },
    data: {
      sources: [
        { name: 'ko', inputs: [koFile], lang: 'ko', weight: 0.7 },
        { name: 'en', inputs: [enFile], lang: 'en', weight: 0.3 },
      ],
      val_fraction: 0.1,
    },
    tokenizer: { train_vocab_size: 400 },
    prep: { keep_rejects: true, workers: 1, perplexity: { lm_order: 3, max_percentile: 90 } },
    ...extra,
  });
}

interface Report {
  stages: Array<{ stage: string; source: string; docs_in: number; docs_out: number; reasons: Record<string, number>; bytes_in: number; extra?: Record<string, unknown> }>;
  dedup: Record<string, number>;
  clusters: Array<{ size: number; members: Array<{ id: string; jaccard: number }> }>;
  tokens: Record<string, Record<string, number>>;
}

const readReport = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'out', 'prep_report.json'), 'utf8')) as Report;
const rejects = (dir: string, stage: string, src: string) =>
  fs.readFileSync(path.join(dir, 'out', 'prep', 'rejects', stage, `${src}.jsonl`), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

test('prep runs every stage over two sources; counts chain; duplicates and rule failures are dropped with reasons', () => {
  const d = tmpDir('prep');
  const r = runCli(['--config', prepConfig(d)]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const rep = readReport(d);
  for (const src of ['ko', 'en']) {
    const chain = rep.stages.filter((s) => s.source === src);
    assert.deepEqual(chain.map((s) => s.stage), src === 'ko' ? ['read', 'rules', 'dedup', 'perplexity', 'tokenize'] : ['read', 'rules', 'dedup', 'tokenize']);
    for (let i = 1; i < chain.length; i++) assert.equal(chain[i].docs_in, chain[i - 1].docs_out, `${src}: ${chain[i].stage} takes what ${chain[i - 1].stage} kept`);
  }
  const koRead = rep.stages.find((s) => s.stage === 'read' && s.source === 'ko')!;
  assert.equal(koRead.reasons.malformed_line, 2);
  const koRules = rejects(d, '01-rules', 'ko');
  const reasonOf = (id: string) => koRules.find((x) => x.id === id)?.reason;
  assert.equal(reasonOf('ko-english'), 'korean_ratio_low');
  assert.equal(reasonOf('ko-headings'), 'no_terminated_sentences');
  assert.ok(koRules.every((x) => typeof x.text === 'string'), 'keep_rejects writes the text');
  assert.equal(rejects(d, '01-rules', 'en').find((x) => x.id === 'en-short')?.reason, 'too_few_words');
  const dups = rejects(d, '02-dedup', 'ko');
  const near = dups.find((x) => x.id === 'ko-3-near');
  assert.equal(near?.reason, 'near_duplicate');
  assert.equal(near?.duplicate_of, 'ko-3');
  assert.ok(near.jaccard >= 0.8 && near.jaccard < 1, `near-duplicate Jaccard ${near.jaccard}`);
  assert.equal(dups.find((x) => x.id === 'ko-7-exact')?.reason, 'exact_duplicate');
  assert.equal(dups.length, 2, JSON.stringify(dups.map((x) => x.id)));
  assert.ok(rep.clusters.length >= 2 && rep.clusters.every((c) => c.size >= 2));
  // The perplexity filter at the 90th percentile drops about a tenth of the Korean documents.
  const ppl = rep.stages.find((s) => s.stage === 'perplexity')!;
  const dropped = ppl.docs_in - ppl.docs_out;
  assert.ok(dropped >= 1 && dropped <= Math.ceil(ppl.docs_in * 0.1) + 1, `dropped ${dropped} of ${ppl.docs_in}`);
  assert.ok(fs.existsSync(path.join(d, 'out', 'prep', 'lm', 'ko.3gram.arpa.gz')));
  // Shards per source, the manifest records both.
  const m = JSON.parse(fs.readFileSync(path.join(d, 'out', 'shards', 'manifest.json'), 'utf8'));
  assert.deepEqual(Object.keys(m.sources).sort(), ['en', 'ko']);
  assert.ok(m.sources.ko.splits.train.files[0].startsWith('train-ko-'));
  assert.equal(m.splits.train.num_tokens, m.sources.ko.splits.train.num_tokens + m.sources.en.splits.train.num_tokens);
  assert.match(r.stdout, /stage\s+source\s+docs in\s+docs out/);
  assert.match(r.stdout, /cluster of 2: ko:ko-3 \(J≈1\), ko:ko-3-near \(J≈0\.\d+\)/);
});

test('prep resumes: a finished stage is not redone, an interrupted one is, and the shards come out the same', async () => {
  const d = tmpDir('prep-resume');
  const cfg = prepConfig(d);
  assert.equal(runCli(['--config', cfg]).code, 0);
  const manifest = path.join(d, 'out', 'shards', 'manifest.json');
  const shardBytes = () => fs.readdirSync(path.join(d, 'out', 'shards')).filter((f) => f.endsWith('.arrow')).sort().map((f) => fs.readFileSync(path.join(d, 'out', 'shards', f)).toString('hex'));
  const first = shardBytes();
  const dedupOut = path.join(d, 'out', 'prep', '02-dedup', 'ko.jsonl');
  const mtime = fs.statSync(dedupOut).mtimeMs;
  // Interrupt: the perplexity stage's outputs are gone and a half-written file is left behind.
  fs.rmSync(path.join(d, 'out', 'prep', '03-perplexity'), { recursive: true });
  fs.mkdirSync(path.join(d, 'out', 'prep', '03-perplexity'));
  fs.writeFileSync(path.join(d, 'out', 'prep', '03-perplexity', 'ko.jsonl.partial'), '{"id": "half');
  fs.rmSync(manifest);
  const r = runCli(['--config', cfg]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(fs.statSync(dedupOut).mtimeMs, mtime, 'dedup was not redone');
  assert.deepEqual(shardBytes(), first);
  // A changed threshold invalidates that stage and the ones after it only.
  const r2 = runCli(['--config', cfg, '--prep.perplexity.max_percentile', '50']);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(fs.statSync(dedupOut).mtimeMs, mtime);
  const rep = readReport(d);
  const ppl = rep.stages.find((s) => s.stage === 'perplexity')!;
  assert.ok(ppl.docs_out <= Math.ceil(ppl.docs_in / 2) + 1);
});

test('prep survives bad input: invalid UTF-8, empty lines, a corrupt gzip names the file, a 50 MB one-line document', () => {
  const d = tmpDir('prep-bad');
  const txt = path.join(d, 'raw.txt');
  const r = rng(3);
  const good = Array.from({ length: 20 }, () => koDoc(r, 3).replace(/\n/g, ' '));
  const bad = Buffer.concat([Buffer.from(good.join('\n') + '\n'), Buffer.from([0xff, 0xc3, 0x28, 0xe2, 0x82, 0x0a]), Buffer.from('\n\n   \n')]);
  fs.writeFileSync(txt, bad);
  const big = path.join(d, 'big.jsonl');
  // 50 MB on one line (as a scraped page with no newlines can be), from a 500-word vocabulary.
  const pool = Array.from({ length: 500 }, () => koWord(r));
  const sentences: string[] = [];
  for (let bytes = 0; bytes < 50_000_000; ) {
    const s = `${pool[Math.floor(r() * 500)]} ${pool[Math.floor(r() * 500)]} ${pool[Math.floor(r() * 500)]}입니다. `;
    sentences.push(s);
    bytes += Buffer.byteLength(s);
  }
  fs.writeFileSync(big, JSON.stringify({ id: 'big', text: sentences.join('') }) + '\n');
  const cfg = writeJson(path.join(d, 'run.yaml'), {
    run: { out_dir: path.join(d, 'out'), stages: ['prep'], threads: 2 },
    data: { sources: [{ name: 'raw', inputs: [txt, big], lang: 'ko' }], val_fraction: 0 },
    prep: { filters: ['rules', 'dedup'], workers: 1 },
  });
  const res = runCli(['--config', cfg]);
  assert.equal(res.code, 0, res.stderr + res.stdout);
  const rep = readReport(d);
  const read = rep.stages.find((s) => s.stage === 'read')!;
  assert.equal(read.docs_in, 22); // 20 good lines, the invalid-bytes line, the big document
  const rules = rep.stages.find((s) => s.stage === 'rules')!;
  assert.ok(rules.docs_out >= 20, JSON.stringify(rules));
  // The big document survives whole: its tokens are in the shards (Llama 3.1 needs > 1 token per 8 bytes).
  const tokenize = rep.stages.find((s) => s.stage === 'tokenize')!;
  assert.ok(tokenize.bytes_in > 50_000_000 && (tokenize.extra as { tokens: number }).tokens > 50_000_000 / 8, JSON.stringify(tokenize));
  const gz = path.join(d, 'corrupt.jsonl.gz');
  fs.writeFileSync(gz, Buffer.concat([zlib.gzipSync('{"text": "가나다"}\n'.repeat(100)).subarray(0, 40), Buffer.from('garbage')]));
  const cfg2 = writeJson(path.join(d, 'run2.yaml'), {
    run: { out_dir: path.join(d, 'out2'), stages: ['prep'] },
    data: { sources: [{ name: 'gz', inputs: [gz] }] },
  });
  const res2 = runCli(['--config', cfg2]);
  assert.equal(res2.code, 1);
  assert.match(res2.stderr, /corrupt\.jsonl\.gz/);
});

test('mixing: the realized share follows the weights, and a killed run resumes the exact stream', async () => {
  const d = tmpDir('mix');
  assert.equal(runCli(['--config', prepConfig(d, { prep: { filters: [], workers: 1 } })]).code, 0);
  const shards = path.join(d, 'out', 'shards');
  const trainCfg = (out: string, steps: number) =>
    writeJson(path.join(d, `${path.basename(out)}.yaml`), {
      run: { out_dir: out, seed: 9, stages: ['train'], threads: 2 },
      data: {
        shard_dir: shards,
        sources: [
          { name: 'ko', inputs: ['unused'], weight: 0.8 },
          { name: 'en', inputs: ['unused'], weight: 0.2 },
        ],
      },
      model: { ...tinyModel, vocab_size: 400 },
      train: { steps, batch_size: 8, seq_len: 16, lr: 0.01, log_every: 1, checkpoint_every: 3, keep_checkpoints: 0 },
    });
  const full = path.join(d, 'full'), killed = path.join(d, 'killed');
  const rf = runCli(['--config', trainCfg(full, 12)]);
  assert.equal(rf.code, 0, rf.stderr);
  const m = /mix realized over this run's \d+ tokens: ko ([\d.]+)% \/ en ([\d.]+)%/.exec(rf.stdout);
  assert.ok(m, rf.stdout);
  // 96 rows drawn with p = 0.8: within 4 standard deviations (4·sqrt(.8·.2/96) = 16 points).
  assert.ok(Math.abs(Number(m[1]) - 80) < 16.4, `ko share ${m[1]}%`);
  const cfgK = trainCfg(killed, 12);
  await runCliKilledAt(['--config', cfgK], path.join(killed, 'step-00000003', 'COMPLETE'));
  const state = JSON.parse(fs.readFileSync(path.join(killed, 'step-00000003', 'trainer_state.json'), 'utf8'));
  assert.equal(state.data_cursor.ko + state.data_cursor.en, 3 * 8);
  assert.equal(runCli(['--config', cfgK, '--train.resume', 'true']).code, 0);
  const losses = (dir: string) => readMetrics(path.join(dir, 'metrics.jsonl')).filter((x) => x.loss !== undefined).map((x) => [x.step, x.loss]);
  assert.deepEqual(losses(killed), losses(full));
  // Changing the weights under a checkpoint is refused: the saved cursor no longer matches.
  const changed = JSON.parse(fs.readFileSync(cfgK, 'utf8'));
  changed.data.sources[0].weight = 0.2;
  changed.train.steps = 15;
  fs.writeFileSync(cfgK, JSON.stringify(changed));
  const rc = runCli(['--config', cfgK, '--train.resume', 'true']);
  assert.equal(rc.code, 1);
  assert.match(rc.stderr, /data cursor .* does not match/);
});

test('ko-train lm train writes ARPA (gzipped) that lm query reads back; bad ARPA names the line', () => {
  const d = tmpDir('lm');
  const corpus = path.join(d, 'c.txt');
  fs.writeFileSync(corpus, 'a b c\na b\nb c a\na b c d\n');
  const out = path.join(d, 'm.arpa.gz');
  const r = runCli(['lm', 'train', '--input', corpus, '--order', '3', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /3-gram interpolated modified Kneser-Ney model on 4 lines/);
  const arpa = zlib.gunzipSync(fs.readFileSync(out)).toString('utf8');
  assert.match(arpa, /^\s*\\data\\\nngram 1=\d+\nngram 2=\d+\nngram 3=\d+/);
  const q = path.join(d, 'q.txt');
  fs.writeFileSync(q, 'a b c\nz z\n');
  const rq = runCli(['lm', 'query', '--lm', out, '--input', q]);
  assert.equal(rq.code, 0, rq.stderr);
  const lines = rq.stdout.trim().split('\n');
  assert.equal(lines.length, 3);
  // Each line's total is the sum of its per-word values; "z z" has 2 OOVs.
  const nums = lines[0].split('\t').slice(0, -1).map((c) => Number(c.split(' ')[1]));
  const total = Number(/Total: (-?[\d.]+)/.exec(lines[0])![1]);
  assert.ok(Math.abs(nums.reduce((a, b) => a + b, 0) - total) < 1e-5);
  assert.match(lines[1], /OOV: 2$/);
  const badArpa = path.join(d, 'bad.arpa');
  fs.writeFileSync(badArpa, '\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\ta\n-x\tb\n\n\\end\\\n');
  const rb = runCli(['lm', 'query', '--lm', badArpa, '--input', q]);
  assert.equal(rb.code, 1);
  assert.match(rb.stderr, /bad\.arpa: .*line 6/);
});

test('English repetition thresholds from the config reach the native rules; bad values name the key', async () => {
  const addon = prepNative();
  const names = addon.ruleReasonNames();
  // 60 words, "the cat" 20 times: the top 2-gram covers 20 × 7 of 239 characters (0.59 > 0.20).
  const words: string[] = [];
  for (let i = 0; i < 20; i++) words.push('the', 'cat', `word${String.fromCharCode(97 + (i % 26))}${'xyz'[i % 3]}${i}`);
  const doc = words.join(' ') + ' and with.';
  const packed = packDocs([{ id: 'a', text: doc }]);
  const dflt = await addon.applyRules('en', {}, packed.bytes, packed.offsets);
  assert.equal(names[dflt.reason[0]], 'top_2gram_char_frac');
  assert.ok(Math.abs(dflt.value[0] - (20 * 7) / [...doc].length) < 1e-12, String(dflt.value[0]));
  const loose = await addon.applyRules('en', { max_top_ngram_char_frac: [1, 1, 1], max_dup_ngram_char_frac: [1, 1, 1, 1, 1, 1] }, packed.bytes, packed.offsets);
  assert.equal(names[loose.reason[0]], 'kept');
  await assert.rejects(async () => addon.applyRules('en', { max_top_ngram_char_frac: [1, 1] }, packed.bytes, packed.offsets), /prep\.rules\.en\.max_top_ngram_char_frac must be an array of 3 numbers/);
  // Offsets past the end of the text are refused before any document is read.
  const bad = new BigInt64Array([0n, BigInt(packed.bytes.length + 1)]);
  await assert.rejects(async () => addon.applyRules('en', {}, packed.bytes, bad), /offset/i);
});

test('native LM normalization equals the JavaScript reference on the example corpus and on edge cases', async () => {
  const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
  const texts: string[] = [];
  for (const f of ['libreoffice-help-ko.jsonl', 'libreoffice-help-en.jsonl']) {
    const file = path.join(repo, 'examples', 'data', f);
    if (!fs.existsSync(file)) continue;
    for (const l of fs.readFileSync(file, 'utf8').split('\n')) if (l) texts.push((JSON.parse(l) as { text: string }).text);
  }
  assert.ok(texts.length >= 1000, `corpus documents: ${texts.length}`);
  texts.push(
    'ＡＢＣ １２３ Ⅻ ℃ ﬁ', // NFKC folds these before the native part
    'İstanbul ΣΑΣ', // lower-casing that changes length
    '\u0663\u096a 7\u20ac 3.14% \u{1f600}\u{1f1f0}\u{1f1f7}',
    'a\u2028b\u2029c\r\nd\u000be\u0085f\ufeffg\u00a0h\u3000i',
    '\n\n \t \n',
    '',
    '«quote» — dash… ‘x’ “y” 〈z〉 ※ ☆ ♥',
  );
  const native = await lmNormalizeBatch(texts);
  assert.equal(native.length, texts.length);
  let diff = -1;
  for (let i = 0; i < texts.length && diff < 0; i++) if (native[i] !== lmNormalize(texts[i])) diff = i;
  assert.equal(diff, -1, diff < 0 ? '' : `document ${diff}: ${JSON.stringify(texts[diff]).slice(0, 200)}\nnative ${JSON.stringify(native[diff]).slice(0, 200)}\njs     ${JSON.stringify(lmNormalize(texts[diff])).slice(0, 200)}`);
});
