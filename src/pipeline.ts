// pipeline.ts — `ko-train --config FILE`: runs the stages listed in run.stages, then writes report.html.
import path from 'node:path';
import type { Config } from './config.js';
import { latestCheckpoint } from './checkpoint.js';
import { evaluateCheckpoint, type EvalResult } from './evaluate.js';
import { generate } from './generate.js';
import { runPrep, type PrepStats } from './prep.js';
import { writeReport } from './report.js';
import { readMetrics, runTrain, type TrainOutcome } from './train.js';
import { shardDirOf } from './traindata.js';

export interface PipelineResult {
  prep?: PrepStats;
  train?: TrainOutcome;
  eval?: EvalResult;
  samples: string[];
  report: string | null;
}

export async function runPipeline(cfg: Config, log: (s: string) => void = console.log): Promise<PipelineResult> {
  const res: PipelineResult = { samples: [], report: null };
  const t0 = Date.now();
  const checkpoint = () => {
    const c = latestCheckpoint(cfg.run.out_dir);
    if (!c) throw new Error(`${cfg.run.out_dir}: no complete checkpoint to use (run the train stage first)`);
    return c.dir;
  };
  for (const stage of cfg.run.stages) {
    log(`== ${stage}`);
    if (stage === 'prep') res.prep = await runPrep(cfg, log);
    else if (stage === 'train') res.train = await runTrain(cfg, log);
    else if (stage === 'eval') {
      const data = cfg.eval.data ?? cfg.data.val ?? shardDirOf(cfg);
      res.eval = await evaluateCheckpoint(checkpoint(), data, { maxLen: cfg.eval.max_len ?? cfg.train.seq_len, split: 'val', log });
      log(`eval: ${data}: loss ${res.eval.loss.toFixed(4)} | ppl ${res.eval.ppl.toFixed(2)} | ${res.eval.tokens} tokens in ${res.eval.sequences} sequences`);
    } else if (stage === 'generate') {
      for (const prompt of cfg.generate.prompts) {
        const g = await generate(checkpoint(), prompt, {
          temperature: cfg.generate.temperature,
          topK: cfg.generate.top_k,
          topP: cfg.generate.top_p,
          maxNewTokens: cfg.generate.max_new_tokens,
          seed: cfg.run.seed,
        });
        res.samples.push(g.text);
        log(`generate: ${JSON.stringify(g.text)} (${g.newTokens} tokens, ${g.msPerToken.toFixed(1)} ms/token)`);
      }
    }
  }
  const metrics = readMetrics(path.join(cfg.run.out_dir, 'metrics.jsonl'));
  if (metrics.length) {
    const first = metrics.find((r) => r.eval_loss !== undefined)?.eval_loss;
    const last = [...metrics].reverse().find((r) => r.eval_loss !== undefined)?.eval_loss;
    const firstTrain = metrics.find((r) => r.loss !== undefined)?.loss;
    const summary: Record<string, string | number> = { 'run': cfg.run.name, 'out_dir': cfg.run.out_dir };
    if (firstTrain !== undefined) summary['first training loss'] = firstTrain.toFixed(4);
    if (first !== undefined) summary['eval loss at step 0'] = first.toFixed(4);
    if (last !== undefined) summary['final eval loss'] = last.toFixed(4);
    if (first !== undefined && last !== undefined) summary['eval loss reduction'] = `${(100 * (1 - last / first)).toFixed(1)}%`;
    if (res.eval) summary['eval (checkpoint) loss / ppl'] = `${res.eval.loss.toFixed(4)} / ${res.eval.ppl.toFixed(2)}`;
    const tps = metrics.map((r) => r.tokens_per_s).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
    if (tps.length) summary['median tokens/s'] = Math.round(tps[Math.floor(tps.length / 2)]);
    res.samples.forEach((s, i) => (summary[`sample ${i + 1}`] = s));
    summary['wall time'] = `${((Date.now() - t0) / 1000).toFixed(0)} s`;
    res.report = path.join(cfg.run.out_dir, 'report.html');
    writeReport(res.report, { title: `ko-train — ${cfg.run.name}`, metrics, summary, config: cfg });
    if (first !== undefined && last !== undefined)
      log(`eval loss ${first.toFixed(4)} at step 0 → ${last.toFixed(4)} (${(100 * (1 - last / first)).toFixed(1)}% lower)`);
    log(`report: ${path.resolve(res.report)}`);
  }
  return res;
}
