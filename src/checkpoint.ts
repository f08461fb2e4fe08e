// checkpoint.ts — Hugging Face layout checkpoints (config.json, model.safetensors, tokenizer.json,
// generation_config.json) plus the trainer state for exact resume (optimizer.safetensors, trainer_state.json).
// A checkpoint is written into a temporary folder, its completion marker last, then renamed into place, so a
// crash never leaves a half checkpoint as the latest.
import fs from 'node:fs';
import path from 'node:path';
import type { ResolvedModel } from './config.js';
import type { ParamInfo } from './native.js';
import { readSafetensors, readTensorF32, writeSafetensors, type SafetensorsFile } from './safetensors.js';

export const COMPLETE_MARKER = 'COMPLETE';

export interface TrainerState {
  step: number; // optimizer steps taken
  seed: number;
  tokens_seen: number;
  tokenizer_hash: string | null;
  data_windows: number; // windows in an epoch when the checkpoint was written (resume checks it)
  precision?: string; // the precision the run trained in (FP8 scaling state is stored when fp8)
  data_cursor?: Record<string, number>; // mixed sources: windows taken from each so far (src/mixing.ts)
}

// FP8 delayed-scaling state (3 tensors per linear layer), kept beside the optimizer moments.
export interface Fp8Tensors {
  scale: Float32Array;
  scaleInv: Float32Array;
  amaxCur: Float32Array;
  history: Float32Array;
  historyLen: number;
}

export function stepDirName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

export function hfConfigJson(m: ResolvedModel, eosId: number | null, bosId: number | null): Record<string, unknown> {
  return {
    architectures: [m.model_type === 'qwen3' ? 'Qwen3ForCausalLM' : 'LlamaForCausalLM'],
    model_type: m.model_type,
    vocab_size: m.vocab_size,
    hidden_size: m.hidden_size,
    num_hidden_layers: m.num_hidden_layers,
    num_attention_heads: m.num_attention_heads,
    num_key_value_heads: m.num_key_value_heads,
    head_dim: m.head_dim,
    intermediate_size: m.intermediate_size,
    max_position_embeddings: m.max_position_embeddings,
    rope_theta: m.rope_theta,
    rope_scaling: m.rope_scaling,
    rms_norm_eps: m.rms_norm_eps,
    tie_word_embeddings: m.tie_word_embeddings,
    hidden_act: 'silu',
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    initializer_range: 0.02,
    use_cache: true,
    torch_dtype: 'float32',
    bos_token_id: bosId,
    eos_token_id: eosId,
  };
}

// Maps a Hugging Face config.json onto the model ko-train builds; unsupported settings are errors.
export function modelFromHfConfig(file: string): ResolvedModel {
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read config.json (${(e as Error).message})`);
  }
  const num = (k: string, fallback?: number): number => {
    const v = c[k] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${file}: '${k}' must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const type = c.model_type;
  if (type !== 'llama' && type !== 'qwen3')
    throw new Error(`${file}: model_type ${JSON.stringify(type)} is not supported (allowed: llama, qwen3)`);
  if (c.attention_bias === true || c.mlp_bias === true) throw new Error(`${file}: attention_bias/mlp_bias are not supported`);
  let ropeScaling: ResolvedModel['rope_scaling'] = null;
  const rs = c.rope_scaling as Record<string, unknown> | null | undefined;
  if (rs) {
    const kind = rs.rope_type ?? rs.type;
    if (kind !== 'llama3') throw new Error(`${file}: rope_scaling type ${JSON.stringify(kind)} is not supported (allowed: llama3)`);
    ropeScaling = {
      rope_type: 'llama3',
      factor: Number(rs.factor),
      low_freq_factor: Number(rs.low_freq_factor ?? 1),
      high_freq_factor: Number(rs.high_freq_factor ?? 4),
      original_max_position_embeddings: Number(rs.original_max_position_embeddings ?? 8192),
    };
  }
  const heads = num('num_attention_heads');
  const hidden = num('hidden_size');
  return {
    model_type: type,
    vocab_size: num('vocab_size'),
    hidden_size: hidden,
    num_hidden_layers: num('num_hidden_layers'),
    num_attention_heads: heads,
    num_key_value_heads: num('num_key_value_heads', heads),
    head_dim: num('head_dim', hidden / heads),
    intermediate_size: num('intermediate_size'),
    max_position_embeddings: num('max_position_embeddings', 2048),
    rope_theta: num('rope_theta', 10000),
    rope_scaling: ropeScaling,
    rms_norm_eps: num('rms_norm_eps', 1e-6),
    tie_word_embeddings: c.tie_word_embeddings === true,
  };
}

function openWeights(dir: string): { files: SafetensorsFile[]; where: Map<string, SafetensorsFile> } {
  const index = path.join(dir, 'model.safetensors.index.json');
  const names = fs.existsSync(index)
    ? [...new Set(Object.values((JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map))]
    : ['model.safetensors'];
  const files = names.map((n) => readSafetensors(path.join(dir, n)));
  const where = new Map<string, SafetensorsFile>();
  for (const f of files) for (const n of f.names) where.set(n, f);
  return { files, where };
}

// Reads an HF checkpoint's weights into one Float32Array in ko-train's layout (F32, BF16 and F16 accepted).
export function loadWeights(dir: string, layout: ParamInfo[], total: number): Float32Array {
  const { where } = openWeights(dir);
  const params = new Float32Array(total);
  for (const p of layout) {
    const f = where.get(p.name);
    if (!f) throw new Error(`${dir}: checkpoint has no tensor '${p.name}'`);
    const info = f.info(p.name);
    if (info.shape.join(',') !== p.shape.join(','))
      throw new Error(`${f.path}: tensor '${p.name}' has shape [${info.shape}], the config implies [${p.shape}]`);
    params.set(readTensorF32(f, p.name), p.offset);
  }
  return params;
}

function tensorsOf(layout: ParamInfo[], buf: Float32Array, prefix = '') {
  return layout.map((p) => ({ name: prefix + p.name, shape: p.shape, data: buf.subarray(p.offset, p.offset + p.size) }));
}

export interface SaveArgs {
  outDir: string;
  step: number;
  model: ResolvedModel;
  layout: ParamInfo[];
  params: Float32Array;
  m: Float32Array | null; // null: no optimizer.safetensors (LoRA keeps its adapter's moments itself)
  v: Float32Array | null;
  fp8?: Fp8Tensors | null;
  extraFiles?: (tmpDir: string) => void; // more files of the checkpoint, written before it is marked complete
  state: TrainerState;
  tokenizerFile: string | null;
  eosId: number | null;
  bosId: number | null;
}

export function saveCheckpoint(a: SaveArgs): string {
  const final = path.join(a.outDir, stepDirName(a.step));
  const tmp = path.join(a.outDir, `.tmp-${stepDirName(a.step)}-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(hfConfigJson(a.model, a.eosId, a.bosId), null, 2));
  fs.writeFileSync(
    path.join(tmp, 'generation_config.json'),
    JSON.stringify({ bos_token_id: a.bosId, eos_token_id: a.eosId, do_sample: true, temperature: 0.8, top_p: 0.95 }, null, 2),
  );
  writeSafetensors(path.join(tmp, 'model.safetensors'), tensorsOf(a.layout, a.params), { format: 'pt' });
  if (a.m && a.v) writeSafetensors(path.join(tmp, 'optimizer.safetensors'), [
    ...tensorsOf(a.layout, a.m, 'exp_avg.'),
    ...tensorsOf(a.layout, a.v, 'exp_avg_sq.'),
    ...(a.fp8
      ? [
          { name: 'fp8.scale', shape: [a.fp8.scale.length], data: a.fp8.scale },
          { name: 'fp8.scale_inv', shape: [a.fp8.scaleInv.length], data: a.fp8.scaleInv },
          { name: 'fp8.amax_current', shape: [a.fp8.amaxCur.length], data: a.fp8.amaxCur },
          { name: 'fp8.amax_history', shape: [a.fp8.historyLen, a.fp8.scale.length], data: a.fp8.history },
        ]
      : []),
  ]);
  if (a.tokenizerFile) fs.copyFileSync(a.tokenizerFile, path.join(tmp, 'tokenizer.json'));
  fs.writeFileSync(path.join(tmp, 'trainer_state.json'), JSON.stringify(a.state, null, 2));
  a.extraFiles?.(tmp);
  fs.writeFileSync(path.join(tmp, COMPLETE_MARKER), new Date().toISOString() + '\n');
  fs.rmSync(final, { recursive: true, force: true });
  fs.renameSync(tmp, final);
  return final;
}

export function completeCheckpoints(outDir: string): Array<{ step: number; dir: string }> {
  if (!fs.existsSync(outDir)) return [];
  return fs
    .readdirSync(outDir)
    .map((n) => /^step-(\d{8})$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null && fs.existsSync(path.join(outDir, m[0], COMPLETE_MARKER)))
    .map((m) => ({ step: Number(m[1]), dir: path.join(outDir, m[0]) }))
    .sort((x, y) => x.step - y.step);
}

export function latestCheckpoint(outDir: string): { step: number; dir: string } | null {
  const all = completeCheckpoints(outDir);
  return all.length ? all[all.length - 1] : null;
}

// Deletes all but the newest `keep` complete checkpoints (keep 0 = keep everything).
export function pruneCheckpoints(outDir: string, keep: number): void {
  if (keep <= 0) return;
  const all = completeCheckpoints(outDir);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(c.dir, { recursive: true, force: true });
}

export function loadTrainerState(dir: string, layout: ParamInfo[], total: number) {
  const state = JSON.parse(fs.readFileSync(path.join(dir, 'trainer_state.json'), 'utf8')) as TrainerState;
  const f = readSafetensors(path.join(dir, 'optimizer.safetensors'));
  const m = new Float32Array(total);
  const v = new Float32Array(total);
  for (const p of layout) {
    m.set(readTensorF32(f, 'exp_avg.' + p.name), p.offset);
    v.set(readTensorF32(f, 'exp_avg_sq.' + p.name), p.offset);
  }
  let fp8: Fp8Tensors | null = null;
  if (f.names.includes('fp8.scale')) {
    const hist = f.info('fp8.amax_history');
    fp8 = {
      scale: readTensorF32(f, 'fp8.scale'),
      scaleInv: readTensorF32(f, 'fp8.scale_inv'),
      amaxCur: readTensorF32(f, 'fp8.amax_current'),
      history: readTensorF32(f, 'fp8.amax_history'),
      historyLen: hist.shape[0],
    };
  }
  return { state, m, v, fp8 };
}
