// cli.ts — the `ko-train` command line (yargs). Dotted options (--train.lr 3e-4) override config keys;
// yargs' camel-case and dot expansion are off so such keys reach the config untouched.
import yargs, { type Argv, type ArgumentsCamelCase } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ConfigError, loadConfig, type Config } from './config.js';
import { benchTrain, formatTrainBench } from './bench.js';
import { doctor, formatDoctor } from './doctor.js';
import { evaluateCheckpoint } from './evaluate.js';
import { generate, generateBatch } from './generate.js';
import { runPipeline } from './pipeline.js';
import { runPrep } from './prep.js';
import { lmQueryCommand, lmTrainCommand } from './lm_cli.js';
import { tokenizerExtendCommand, tokenizerReportCommand } from './tokenizer_cli.js';
import { runTrain } from './train.js';
import { dpoPairsCommand } from './dpo_data.js';

type Args = ArgumentsCamelCase<Record<string, unknown>>;

// Options each command declares; anything else must be a dotted config override.
const OWN = new Set(['_', '$0', 'what', 'config', 'c', 'help', 'version', 'json', 'checkpoint', 'data', 'prompt', 'steps',
  'max-len', 'split', 'max-new-tokens', 'temperature', 'top-k', 'top-p', 'seed', 'threads', 'warmup', 'kernel', 'action', 'order',
  'input', 'out', 'field', 'tokenization', 'tokenizer', 'lm', 'normalize', 'base', 'corpus', 'add', 'max-piece-chars',
  'maxPieceChars', 'entropy-split', 'entropySplit', 'tasks', 'fewshot', 'prompts-file', 'stop', 'system', 'all-wrong', 'allWrong']);

function overridesOf(argv: Args): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(argv)) {
    if (OWN.has(k)) continue;
    if (!k.includes('.')) throw new ConfigError(`unknown option --${k} (config keys are given as --section.key, e.g. --train.lr 3e-4)`);
    out[k] = v;
  }
  return out;
}

function configFrom(argv: Args): Config {
  return loadConfig((argv.config as string | undefined) ?? null, overridesOf(argv));
}

const withConfig = (y: Argv) =>
  y.option('config', { alias: 'c', type: 'string', describe: 'YAML config file' });

export async function main(args = hideBin(process.argv)): Promise<void> {
  const cli = yargs(args)
    .scriptName('ko-train')
    .parserConfiguration({ 'camel-case-expansion': false, 'dot-notation': false })
    .usage('$0 --config run.yaml [--section.key value ...]\n\nRuns the stages in run.stages (prep, train, eval, generate) and writes report.html.')
    .command(
      '$0',
      'run the stages listed in the config',
      (y) => withConfig(y),
      async (argv) => {
        if (!argv.config) {
          cli.showHelp();
          process.exitCode = 1;
          return;
        }
        await runPipeline(configFrom(argv as Args));
      },
    )
    .command('prep', 'clean, tokenize and shard the raw text in data.inputs', withConfig, async (argv) => {
      await runPrep(configFrom(argv as Args));
    })
    .command('train', 'train (or continue training) a model on prepared shards or pre-tokenized JSONL', withConfig, async (argv) => {
      await runTrain(configFrom(argv as Args));
    })
    .command(
      'eval',
      'mean next-token loss and perplexity of a checkpoint (--data), or benchmark tasks (--tasks)',
      (y) =>
        y
          .option('checkpoint', { type: 'string', demandOption: true, describe: 'HF-layout checkpoint dir' })
          .option('data', { type: 'string', describe: 'JSONL of {"input_ids": [...]} (one sequence per line), an .arrow shard or a shard dir' })
          .option('tasks', { type: 'string', describe: 'task JSONL file, a folder of them, or a name under examples/tasks (see README "Benchmarks")' })
          .option('fewshot', { type: 'number', default: 0, describe: 'tasks: examples of the same task put before each one' })
          .option('seed', { type: 'number', default: 1234, describe: 'tasks: seed of the few-shot draw' })
          .option('out', { type: 'string', describe: 'tasks: folder for one JSON file per task' })
          .option('split', { type: 'string', default: 'val', describe: 'split to read from a shard dir' })
          .option('max-len', { type: 'number', describe: 'longest context scored at once (default: max_position_embeddings)' })
          .option('threads', { type: 'number', default: 0 })
          .option('json', { type: 'boolean', default: false, describe: 'print one JSON object' }),
      async (argv) => {
        overridesOf(argv as Args);
        const { native } = await import('./native.js');
        native().setThreads(argv.threads);
        if (argv.tasks) {
          const { evalTasksCommand } = await import('./eval_tasks.js');
          await evalTasksCommand({ checkpoint: argv.checkpoint, tasks: argv.tasks, fewshot: argv.fewshot, seed: argv.seed, maxLen: argv['max-len'] ?? null, json: argv.json, out: argv.out ?? null, log: console.log });
          return;
        }
        if (!argv.data) throw new ConfigError('eval: give --data (token data) or --tasks (benchmark tasks)');
        const r = await evaluateCheckpoint(argv.checkpoint, argv.data, { maxLen: argv['max-len'] ?? null, split: argv.split });
        if (argv.json) console.log(JSON.stringify(r));
        else console.log(`loss ${r.loss.toFixed(6)} | ppl ${r.ppl.toFixed(3)} | ${r.tokens} tokens | ${r.sequences} sequences`);
      },
    )
    .command(
      'generate',
      'generate text from a checkpoint (KV cache; greedy with --temperature 0)',
      (y) =>
        y
          .option('checkpoint', { type: 'string', demandOption: true })
          .option('prompt', { type: 'string', describe: 'the prompt (or --prompts-file)' })
          .option('prompts-file', { type: 'string', describe: 'one prompt per line, generated together as a batch' })
          .option('stop', { type: 'string', array: true, describe: 'stop when the new text contains this (repeatable); the output ends before it' })
          .option('max-new-tokens', { type: 'number', default: 64 })
          .option('temperature', { type: 'number', default: 0.8 })
          .option('top-k', { type: 'number', default: 40 })
          .option('top-p', { type: 'number', default: 0.95 })
          .option('seed', { type: 'number', default: 1 })
          .option('json', { type: 'boolean', default: false }),
      async (argv) => {
        overridesOf(argv as Args);
        const sampling = {
          temperature: argv.temperature,
          topK: argv['top-k'],
          topP: argv['top-p'],
          maxNewTokens: argv['max-new-tokens'],
          seed: argv.seed,
          stop: (argv.stop ?? []).map(String),
        };
        if ((argv.prompt === undefined) === (argv['prompts-file'] === undefined)) throw new ConfigError('generate: give --prompt TEXT or --prompts-file FILE');
        if (argv.prompt !== undefined) {
          const r = await generate(argv.checkpoint, argv.prompt, sampling);
          if (argv.json) console.log(JSON.stringify(r));
          else {
            console.log(r.text);
            console.error(`(${r.newTokens} new tokens, ${r.msPerToken.toFixed(1)} ms/token)`);
          }
          return;
        }
        const file = argv['prompts-file'] as string;
        const fs = await import('node:fs');
        if (!fs.existsSync(file)) throw new ConfigError(`generate: --prompts-file ${file} does not exist`);
        const prompts = fs.readFileSync(file, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '');
        if (!prompts.length) throw new ConfigError(`generate: ${file} has no prompts (one per line)`);
        const { loadModel } = await import('./evaluate.js');
        const rs = await generateBatch(loadModel(argv.checkpoint), prompts, sampling);
        rs.forEach((r, i) => {
          if (argv.json) console.log(JSON.stringify({ prompt: prompts[i], text: prompts[i] + r.text, promptTokens: r.promptTokens, newTokens: r.newTokens, finish: r.finish }));
          else console.log(`=== ${i + 1}\n${prompts[i] + r.text}`);
        });
        const total = rs.reduce((a, r) => a + r.newTokens, 0);
        console.error(`(${rs.length} prompts, ${total} new tokens, ${rs[0].msPerToken.toFixed(1)} ms/token over the batch)`);
      },
    )
    .command(
      'chat',
      'talk to a checkpoint in the terminal (its chat template; /reset clears the conversation, /exit quits)',
      (y) =>
        y
          .option('checkpoint', { type: 'string', demandOption: true })
          .option('system', { type: 'string', describe: 'system message at the start of the conversation' })
          .option('max-new-tokens', { type: 'number', default: 256 })
          .option('temperature', { type: 'number', default: 0.7 })
          .option('top-k', { type: 'number', default: 40 })
          .option('top-p', { type: 'number', default: 0.95 })
          .option('seed', { type: 'number', default: 1 })
          .option('threads', { type: 'number', default: 0 }),
      async (argv) => {
        overridesOf(argv as Args);
        const { native } = await import('./native.js');
        native().setThreads(argv.threads);
        const { chatCommand } = await import('./chat.js');
        await chatCommand({
          checkpoint: argv.checkpoint,
          system: argv.system ?? null,
          maxNewTokens: argv['max-new-tokens'],
          temperature: argv.temperature,
          topK: argv['top-k'],
          topP: argv['top-p'],
          seed: argv.seed,
        });
      },
    )
    .command(
      'bench <what>',
      'benchmarks: `bench train` times training steps (CUDA: BF16 and FP8 side by side, with MFU; CPU: against SGEMM)',
      (y) =>
        withConfig(y)
          .positional('what', { choices: ['train'] as const, describe: 'what to benchmark' })
          .option('steps', { type: 'number', default: 5 })
          .option('warmup', { type: 'number', default: 1 })
          .option('json', { type: 'boolean', default: false }),
      async (argv) => {
        const cfg = configFrom(argv as Args);
        const r = await benchTrain(cfg, argv.steps, argv.warmup, argv.json ? () => {} : console.log);
        console.log(argv.json ? JSON.stringify(r) : formatTrainBench(r));
      },
    )
    .command(
      'lm <action>',
      'n-gram language models (ARPA, KenLM-compatible): `lm train` estimates one, `lm query` scores lines',
      (y) =>
        y
          .positional('action', { choices: ['train', 'query'] as const })
          .option('input', { type: 'string', array: true, describe: 'train: text (one sentence per line) or JSONL files, .gz allowed; query: a file of lines (default stdin)' })
          .option('order', { type: 'number', default: 5, describe: 'train: n-gram order (1-6)' })
          .option('out', { type: 'string', describe: 'train: the ARPA file to write (.gz to compress)' })
          .option('field', { type: 'string', default: 'text', describe: 'JSONL text field' })
          .option('tokenization', { choices: ['whitespace', 'tokenizer'] as const, default: 'whitespace' as const })
          .option('tokenizer', { type: 'string', describe: 'tokenizer.json for --tokenization tokenizer' })
          .option('lm', { type: 'string', describe: 'query: the ARPA model' })
          .option('normalize', { type: 'boolean', default: false, describe: "query: apply prep's LM normalization to each line first" })
          .option('threads', { type: 'number', default: 0 }),
      async (argv) => {
        overridesOf(argv as Args);
        const { native } = await import('./native.js');
        native().setThreads(argv.threads);
        if (argv.action === 'train') {
          if (!argv.input?.length) throw new ConfigError('lm train: --input is required');
          if (!argv.out) throw new ConfigError('lm train: --out is required');
          await lmTrainCommand({ inputs: argv.input.map(String), order: argv.order, out: argv.out, field: argv.field, tokenization: argv.tokenization, tokenizer: argv.tokenizer ?? null, log: console.log });
        } else {
          if (!argv.lm) throw new ConfigError('lm query: --lm is required');
          await lmQueryCommand({ lm: argv.lm, input: argv.input?.[0] ? String(argv.input[0]) : null, normalize: argv.normalize, log: console.log });
        }
      },
    )
    .command(
      'tokenizer <action>',
      'Korean-extended vocabularies: `tokenizer extend` learns Korean pieces (Unigram) and merges them into a byte-level BPE; `tokenizer report` compares tokenizers',
      (y) =>
        y
          .positional('action', { choices: ['extend', 'report'] as const })
          .option('base', { type: 'string', default: 'llama3.1', describe: 'extend: llama3.1, qwen3 or a tokenizer.json (or its folder)' })
          .option('corpus', { type: 'string', array: true, describe: 'extend: Korean text, JSONL or plain, .gz allowed' })
          .option('add', { type: 'number', default: 72000, describe: 'extend: new tokens to add' })
          .option('out', { type: 'string', describe: 'extend: output folder (tokenizer.json, tokenizer_config.json, pieces.tsv, extend_report.json)' })
          .option('max-piece-chars', { type: 'number', default: 8, describe: 'extend: longest piece in characters (a leading space counts)' })
          .option('entropy-split', { type: 'boolean', default: false, describe: 'extend: split Hangul runs at branching-entropy boundaries before learning' })
          .option('tokenizer', { type: 'string', array: true, describe: 'report: tokenizer.json files (A, then B), or llama3.1' })
          .option('data', { type: 'string', array: true, describe: 'report: text files, JSONL or plain, .gz allowed' })
          .option('field', { type: 'string', default: 'text', describe: 'JSONL text field' })
          .option('json', { type: 'boolean', default: false })
          .option('threads', { type: 'number', default: 0 }),
      async (argv) => {
        overridesOf(argv as Args);
        const { native } = await import('./native.js');
        native().setThreads(argv.threads);
        if (argv.action === 'extend') {
          if (!argv.out) throw new ConfigError('tokenizer extend: --out is required');
          await tokenizerExtendCommand({ base: argv.base, corpus: (argv.corpus ?? []).map(String), add: argv.add, out: argv.out, field: argv.field, maxPieceChars: argv['max-piece-chars'] as number, entropySplit: argv['entropy-split'] as boolean, log: console.log });
        } else {
          if (!argv.data?.length) throw new ConfigError('tokenizer report: --data is required');
          await tokenizerReportCommand({ tokenizers: (argv.tokenizer ?? ['llama3.1']).map(String), data: argv.data.map(String), field: argv.field, json: argv.json, log: console.log });
        }
      },
    )
    .command(
      'dpo-pairs',
      'turn a multiple-choice task file (the eval --tasks format) into DPO pairs: the right answer chosen, a wrong one rejected',
      (y) =>
        y
          .option('tasks', { type: 'string', demandOption: true, describe: 'multiple-choice task JSONL (its training split)' })
          .option('out', { type: 'string', demandOption: true, describe: 'JSONL of {"prompt", "chosen", "rejected"}' })
          .option('seed', { type: 'number', default: 1234, describe: 'seed of the wrong-answer draw' })
          .option('all-wrong', { type: 'boolean', default: false, describe: 'one pair per wrong choice instead of one per question' }),
      (argv) => {
        dpoPairsCommand({ tasks: argv.tasks, out: argv.out, seed: argv.seed, allWrong: argv['all-wrong'] as boolean, log: console.log });
      },
    )
    .command(
      'doctor',
      'report the build, the CPU GEMM backend, and the GPUs (with FP8 support)',
      (y) => y.option('json', { type: 'boolean', default: false }),
      (argv) => {
        const r = doctor();
        console.log(argv.json ? JSON.stringify(r, null, 2) : formatDoctor(r));
      },
    )
    .help()
    .alias('h', 'help')
    .fail((msg, err) => {
      if (err) throw err;
      console.error(`ko-train: ${msg}\n(ko-train --help for usage)`);
      process.exit(2);
    });
  await cli.parseAsync();
}
