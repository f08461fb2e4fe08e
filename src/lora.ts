// lora.ts — LoRA adapters on the TypeScript side: their layout (from the addon), the PEFT files
// (adapter_model.safetensors + adapter_config.json, loadable by peft.PeftModel.from_pretrained) and the
// adapters' AdamW moments for exact resume. Training merges W0 + (alpha/rank)·B·A into the model's params
// (native/lora.h), so a checkpoint's model.safetensors is the merged model and everything that reads
// checkpoints (eval, generate, transformers) works on it unchanged.
import fs from 'node:fs';
import path from 'node:path';
import type { ResolvedModel } from './config.js';
import { native, type LoraSite } from './native.js';
import { readSafetensors, readTensorF32, writeSafetensors, type TensorToWrite } from './safetensors.js';

export type { LoraSite } from './native.js';

// Module names a LoRA target may be, in the order the sites come in within a layer.
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_OPTIMIZER_FILE = 'adapter_optimizer.safetensors';

export interface LoraConfig {
  rank: number;
  alpha: number;
  targets: string[];
}

export interface LoraLayout {
  size: number; // floats in the adapter buffer (and in each of its moments)
  sites: LoraSite[];
}

export interface LoraBuffers {
  layout: LoraLayout;
  adapter: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

export function loraLayout(model: ResolvedModel, cfg: LoraConfig): LoraLayout {
  return native().loraLayout(model, cfg.rank, cfg.targets);
}

// A fresh adapter (A uniform in ±1/sqrt(in), B = 0: the adapted model starts as the base) and zero moments.
export function initLoraBuffers(model: ResolvedModel, cfg: LoraConfig, seed: number): LoraBuffers {
  const layout = loraLayout(model, cfg);
  const adapter = new Float32Array(layout.size);
  native().loraInit(model, cfg.rank, cfg.targets, adapter, seed);
  return { layout, adapter, m: new Float32Array(layout.size), v: new Float32Array(layout.size) };
}

// The merged weights W0 + (alpha/rank)·B·A at every site, W0 elsewhere, in a new buffer.
export function mergedParams(model: ResolvedModel, cfg: LoraConfig, base: Float32Array, adapter: Float32Array): Float32Array {
  const params = Float32Array.from(base);
  native().loraMerge(model, cfg.rank, cfg.alpha, cfg.targets, params, base, adapter);
  return params;
}

// PEFT's name of the adapted module: the HF weight name without ".weight", under "base_model.model.".
function peftModule(site: LoraSite): string {
  return 'base_model.model.' + site.name.replace(/\.weight$/, '');
}

function rankOf(sites: LoraSite[], adapter: Float32Array): number {
  if (sites.length === 0) throw new Error('LoRA: no adapted sites');
  const s = sites[0];
  const rank = (s.bOffset - s.aOffset) / s.in;
  const last = sites[sites.length - 1];
  if (!Number.isInteger(rank) || rank <= 0 || last.bOffset + last.out * rank !== adapter.length)
    throw new Error(`LoRA: adapter has ${adapter.length} floats, which does not fit its ${sites.length} sites`);
  return rank;
}

// The adapter as PEFT tensors: lora_A.weight [rank, in] and lora_B.weight [out, rank] per site, in site order,
// as views into `adapter` (nothing is copied). `prefix` names moment tensors ("exp_avg.").
export function loraAdapterTensors(sites: LoraSite[], adapter: Float32Array, prefix = ''): TensorToWrite[] {
  const rank = rankOf(sites, adapter);
  return sites.flatMap((s) => [
    { name: `${prefix}${peftModule(s)}.lora_A.weight`, shape: [rank, s.in], data: adapter.subarray(s.aOffset, s.aOffset + rank * s.in) },
    { name: `${prefix}${peftModule(s)}.lora_B.weight`, shape: [s.out, rank], data: adapter.subarray(s.bOffset, s.bOffset + s.out * rank) },
  ]);
}

export interface SaveLoraOptions {
  baseModel?: string | null; // base_model_name_or_path
  moments?: { m: Float32Array; v: Float32Array }; // written to adapter_optimizer.safetensors for resume
}

// Writes adapter_model.safetensors and adapter_config.json (PEFT's LoraConfig fields) into dir, plus the
// moments when given.
export function saveLoraAdapter(dir: string, cfg: LoraConfig, sites: LoraSite[], adapter: Float32Array, opts: SaveLoraOptions = {}): void {
  if (rankOf(sites, adapter) !== cfg.rank) throw new Error(`LoRA: the sites were laid out for another rank than ${cfg.rank}`);
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), loraAdapterTensors(sites, adapter), { format: 'pt' });
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: opts.baseModel ?? null,
    r: cfg.rank,
    lora_alpha: cfg.alpha,
    target_modules: LORA_TARGETS.filter((t) => cfg.targets.includes(t)),
    lora_dropout: 0.0,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: false,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
  fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
  if (opts.moments) {
    const { m, v } = opts.moments;
    if (m.length !== adapter.length || v.length !== adapter.length)
      throw new Error(`LoRA: moments have ${m.length} and ${v.length} floats, the adapter ${adapter.length}`);
    writeSafetensors(path.join(dir, ADAPTER_OPTIMIZER_FILE), [
      ...loraAdapterTensors(sites, m, 'exp_avg.'),
      ...loraAdapterTensors(sites, v, 'exp_avg_sq.'),
    ]);
  }
}

// Reads adapter_config.json. Settings that would change what the adapter computes and that ko-train does not
// implement (rsLoRA and DoRA scaling, per-module ranks, biases) are errors, not silently ignored.
export function readLoraConfig(dir: string): LoraConfig {
  const file = path.join(dir, ADAPTER_CONFIG_FILE);
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the LoRA adapter config (${(e as Error).message})`);
  }
  if (c.peft_type !== 'LORA') throw new Error(`${file}: peft_type is ${JSON.stringify(c.peft_type)}, expected "LORA"`);
  const rank = c.r, alpha = c.lora_alpha ?? c.r;
  if (typeof rank !== 'number' || !Number.isInteger(rank) || rank <= 0) throw new Error(`${file}: r must be a positive integer, got ${JSON.stringify(rank)}`);
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new Error(`${file}: lora_alpha must be a number, got ${JSON.stringify(alpha)}`);
  for (const key of ['use_rslora', 'use_dora', 'fan_in_fan_out'])
    if (c[key] === true) throw new Error(`${file}: ${key} is not supported`);
  for (const key of ['rank_pattern', 'alpha_pattern'])
    if (c[key] && Object.keys(c[key] as object).length > 0) throw new Error(`${file}: ${key} is not supported`);
  if (c.bias !== undefined && c.bias !== 'none') throw new Error(`${file}: bias ${JSON.stringify(c.bias)} is not supported (only "none")`);
  if (c.layers_to_transform != null) throw new Error(`${file}: layers_to_transform is not supported`);
  const tm = typeof c.target_modules === 'string' ? [c.target_modules] : c.target_modules;
  if (!Array.isArray(tm) || !tm.every((t) => typeof t === 'string'))
    throw new Error(`${file}: target_modules must be a list of module names, got ${JSON.stringify(c.target_modules)}`);
  return { rank, alpha, targets: tm as string[] };
}

function readTensors(file: string, sites: LoraSite[], size: number, rank: number, prefix: string): Float32Array {
  const f = readSafetensors(file);
  const out = new Float32Array(size);
  const expected = new Set<string>();
  for (const t of loraAdapterTensors(sites, out, prefix)) {
    expected.add(t.name);
    if (!f.names.includes(t.name)) throw new Error(`${file}: no tensor '${t.name}'`);
    const shape = f.info(t.name).shape;
    if (shape.join(',') !== t.shape.join(','))
      throw new Error(`${file}: tensor '${t.name}' has shape [${shape}], rank ${rank} implies [${t.shape}]`);
    t.data.set(readTensorF32(f, t.name));
  }
  const extra = f.names.filter((n) => n.startsWith(prefix) && !expected.has(n));
  if (extra.length > 0)
    throw new Error(`${file}: tensor '${extra[0]}' adapts a module outside this LoRA layout (${extra.length} such tensors)`);
  return out;
}

// Reads an adapter saved by saveLoraAdapter (or by PEFT for these target modules) into the buffer layout of
// `sites` (which must be laid out for the config's rank and targets); the moments when the folder has them.
export function loadLoraAdapter(dir: string, sites: LoraSite[]): {
  config: LoraConfig;
  adapter: Float32Array;
  moments: { m: Float32Array; v: Float32Array } | null;
} {
  const config = readLoraConfig(dir);
  if (sites.length === 0) throw new Error(`${dir}: no LoRA sites to load into`);
  const last = sites[sites.length - 1];
  const size = last.bOffset + last.out * config.rank;
  if ((sites[0].bOffset - sites[0].aOffset) / sites[0].in !== config.rank)
    throw new Error(`${dir}: the adapter has rank ${config.rank} but the layout was made for another rank`);
  const adapter = readTensors(path.join(dir, ADAPTER_WEIGHTS_FILE), sites, size, config.rank, '');
  let moments: { m: Float32Array; v: Float32Array } | null = null;
  const optFile = path.join(dir, ADAPTER_OPTIMIZER_FILE);
  if (fs.existsSync(optFile)) {
    moments = {
      m: readTensors(optFile, sites, size, config.rank, 'exp_avg.'),
      v: readTensors(optFile, sites, size, config.rank, 'exp_avg_sq.'),
    };
  }
  return { config, adapter, moments };
}
