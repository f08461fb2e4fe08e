// dedup_stage.ts — exact and near-duplicate removal across all sources. Pass 1 streams every document
// through the native MinHash (CPU threads or the CUDA kernel: bit-identical signatures) and keeps only the
// signatures (4·num_perm bytes per document) and an exact hash (8 bytes); LSH banding, confirmation by
// estimated Jaccard and union-find then pick one survivor per cluster (the first in input order). Pass 2
// streams the documents again and writes the survivors.
import fs from 'node:fs';
import path from 'node:path';
import { chooseDevice, native } from '../native.js';
import { AtomicJsonlWriter } from './atomic_writer.js';
import { batchDocs, packDocs } from './documents.js';
import { prepNative, type NearDupResult } from './native_prep.js';
import { newStats, type StageStats } from './report.js';
import {
  fileBytes, finishedOutput, fingerprint, markFinished, rejectsFileFor, stageDir, stageDocs, StageWriter,
  type PrepContext, type StageOutput,
} from './stage.js';

export interface ClusterSample {
  size: number;
  members: Array<{ source: string; id: string; jaccard: number; preview: string }>;
}

// Growable arrays of signatures and hashes, one row per document in input order.
class SignatureStore {
  sigs: Uint32Array;
  exact: BigUint64Array;
  n = 0;
  constructor(private readonly numPerm: number) {
    this.sigs = new Uint32Array(numPerm * 1024);
    this.exact = new BigUint64Array(1024);
  }
  add(sigs: Uint32Array, exact: BigUint64Array): void {
    const k = exact.length;
    while (this.n + k > this.exact.length) {
      const s = new Uint32Array(this.sigs.length * 2);
      s.set(this.sigs);
      this.sigs = s;
      const e = new BigUint64Array(this.exact.length * 2);
      e.set(this.exact);
      this.exact = e;
    }
    this.sigs.set(sigs, this.n * this.numPerm);
    this.exact.set(exact, this.n);
    this.n += k;
  }
}

export async function dedupStage(
  ctx: PrepContext,
  index: number,
  inputs: Map<string, StageOutput>,
): Promise<{ outputs: Map<string, StageOutput>; samples: ClusterSample[]; summary: Record<string, unknown> }> {
  const o = ctx.cfg.prep.dedup;
  if (o.bands * o.rows > o.num_perm)
    throw new Error(`prep.dedup: bands × rows = ${o.bands * o.rows} exceeds num_perm = ${o.num_perm}`);
  const settings = { stage: 'dedup', o: { ...o, device: undefined }, inputs: [...inputs].map(([k, v]) => [k, v.fingerprint]), keep: ctx.cfg.prep.keep_rejects };
  const fp = fingerprint(settings);
  const dir = stageDir(ctx, index, 'dedup');
  const summaryFile = path.join(dir, 'summary.json');
  const files = new Map([...inputs.keys()].map((s) => [s, path.join(dir, `${s}.jsonl`)]));
  const cached = new Map<string, StageOutput>();
  for (const [s, f] of files) {
    const d = finishedOutput(f, fp);
    if (d) cached.set(s, d);
  }
  if (cached.size === inputs.size && fs.existsSync(summaryFile)) {
    const sum = JSON.parse(fs.readFileSync(summaryFile, 'utf8'));
    if (sum.fingerprint === fp) return { outputs: cached, samples: sum.samples, summary: sum.summary };
  }

  const addon = prepNative();
  let device = -1;
  let deviceNote = 'cpu';
  if (o.device !== 'cpu') {
    const dev = chooseDevice(o.device, native().cudaInfo());
    if (dev.device === 'cuda') {
      device = dev.index;
      deviceNote = `cuda:${dev.index} (${dev.name})`;
    } else deviceNote = `cpu (${dev.reason})`;
  }
  // Pass 1: signatures.
  const store = new SignatureStore(o.num_perm);
  const stats = new Map<string, StageStats>();
  const t0 = Date.now();
  let signMs = 0;
  const total = fileBytes([...inputs.values()].map((v) => v.file));
  let seen = 0;
  const firstDoc = new Map<string, number>();
  for (const [s, inp] of inputs) {
    const st = newStats('dedup', s);
    stats.set(s, st);
    firstDoc.set(s, store.n);
    for await (const batch of batchDocs(stageDocs(inp.file, (n) => (seen += n)), ctx.cfg.prep.batch_mb * 1e6)) {
      const packed = packDocs(batch);
      st.docs_in += batch.length;
      st.bytes_in += packed.bytes.length;
      const t = Date.now();
      const r = await addon.minhash(packed.bytes, packed.offsets, { numPerm: o.num_perm, ngram: o.ngram, wordNgrams: o.word_ngrams, seed: o.seed, device });
      signMs += Date.now() - t;
      if (!o.exact) r.exact.fill(0n);
      store.add(r.sigs, r.exact);
      ctx.bar.update(seen, total, `dedup: signatures of ${store.n} docs`, ((Date.now() - t0) / 1000 / Math.max(1, seen)) * (total - seen));
    }
  }
  const bytesIn = [...stats.values()].reduce((a, s) => a + s.bytes_in, 0);
  // Clusters.
  const tl = Date.now();
  let res: NearDupResult;
  if (o.near) {
    res = await addon.nearDuplicates(store.sigs.subarray(0, store.n * o.num_perm), o.num_perm, { bands: o.bands, rows: o.rows, threshold: o.threshold }, o.exact ? store.exact.subarray(0, store.n) : null);
  } else {
    // Exact only: the first document with a hash survives.
    const rep = new Float64Array(store.n);
    const first = new Map<bigint, number>();
    for (let i = 0; i < store.n; i++) {
      const h = store.exact[i];
      const f = first.get(h);
      rep[i] = f ?? i;
      if (f === undefined) first.set(h, i);
    }
    res = { representative: rep, clusters: [], candidatePairs: 0, confirmedPairs: 0 };
  }
  const lshMs = Date.now() - tl;

  // Which source and ordinal each global index has.
  const sources = [...inputs.keys()];
  const locate = (g: number): [string, number] => {
    let s = sources[0];
    for (const name of sources) if ((firstDoc.get(name) ?? 0) <= g) s = name;
    return [s, g - (firstDoc.get(s) ?? 0)];
  };
  // Members of the first clusters, for the report: their ids and text are picked up in pass 2.
  const sampleClusters = [...res.clusters].sort((a, b) => b.members.length - a.members.length || a.members[0] - b.members[0]).slice(0, 5);
  const wanted = new Map<number, { id: string; preview: string }>();
  for (const c of sampleClusters) for (const m of c.members) wanted.set(m, { id: '', preview: '' });
  const jaccardOf = new Map<number, number>();
  for (const c of res.clusters) c.members.forEach((m, i) => jaccardOf.set(m, c.jaccard[i]));

  // Pass 2: survivors.
  const outputs = new Map<string, StageOutput>();
  let exactDropped = 0, nearDropped = 0;
  for (const [s, inp] of inputs) {
    const st = stats.get(s)!;
    const w = new StageWriter(files.get(s)!, rejectsFileFor(ctx, index, 'dedup', s), st, ctx.cfg.prep.keep_rejects);
    let g = firstDoc.get(s)!;
    const idOf = new Map<number, string>();
    try {
      for await (const d of stageDocs(inp.file)) {
        const rep = res.representative[g];
        if (wanted.has(g)) wanted.set(g, { id: d.id, preview: d.text.slice(0, 80).replace(/\s+/g, ' ') });
        idOf.set(g, d.id);
        if (rep === g) w.keep(d);
        else {
          const exact = o.exact && store.exact[g] === store.exact[rep];
          if (exact) exactDropped++;
          else nearDropped++;
          const [rs, ro] = locate(rep);
          w.reject(d, exact ? 'exact_duplicate' : 'near_duplicate', {
            duplicate_of: idOf.get(rep) ?? `${rs}#${ro}`,
            jaccard: Number((jaccardOf.get(g) ?? 1).toFixed(4)),
          });
        }
        g++;
      }
    } catch (e) {
      w.abort();
      throw e;
    }
    w.commit();
    st.seconds = ((Date.now() - t0) / 1000) * (st.bytes_in / Math.max(1, bytesIn));
    outputs.set(s, { file: files.get(s)!, fingerprint: fp, stats: st });
  }
  const samples: ClusterSample[] = sampleClusters.map((c) => ({
    size: c.members.length,
    members: c.members.map((m, i) => {
      const [src] = locate(m);
      return { source: src, id: wanted.get(m)?.id ?? '', jaccard: Number(c.jaccard[i].toFixed(4)), preview: wanted.get(m)?.preview ?? '' };
    }),
  }));
  // Every cluster, for whoever wants to inspect them.
  const cw = new AtomicJsonlWriter(path.join(dir, 'clusters.jsonl'));
  for (const c of res.clusters) cw.write({ members: c.members.map((m) => locate(m).join('#')), jaccard: c.jaccard.map((j) => Number(j.toFixed(4))) });
  cw.commit();
  const summary = {
    device: deviceNote,
    documents: store.n,
    signature_mb_per_s: bytesIn / 1e3 / Math.max(1, signMs),
    lsh_seconds: lshMs / 1000,
    clusters: res.clusters.length,
    candidate_pairs: res.candidatePairs,
    confirmed_pairs: res.confirmedPairs,
    exact_duplicates: exactDropped,
    near_duplicates: nearDropped,
    memory_bytes_per_doc: 4 * o.num_perm + 8 + 8 * o.bands,
  };
  for (const out of outputs.values()) {
    out.stats.extra = { device: deviceNote };
    markFinished(out);
  }
  fs.writeFileSync(summaryFile, JSON.stringify({ fingerprint: fp, samples, summary }, null, 2));
  return { outputs, samples, summary };
}
