// precision.ts — train.precision and train.fp8 turned into the addon's PrecisionOptions: which linear
// layers ("sites", in the order of native/model.h numLinearSites) run in FP8, and the scaling recipe.
import type { Config, ResolvedModel } from './config.js';
import type { PrecisionOptions } from './native.js';

// The weight names of each linear site: per layer the fused q,k,v projection, o_proj, the fused gate/up
// projection and down_proj; then the LM head.
export function linearSiteNames(model: ResolvedModel): string[][] {
  const sites: string[][] = [];
  for (let l = 0; l < model.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    sites.push([`${p}self_attn.q_proj`, `${p}self_attn.k_proj`, `${p}self_attn.v_proj`]);
    sites.push([`${p}self_attn.o_proj`]);
    sites.push([`${p}mlp.gate_proj`, `${p}mlp.up_proj`]);
    sites.push([`${p}mlp.down_proj`]);
  }
  sites.push(['lm_head']);
  return sites;
}

// 1 = FP8, 0 = BF16. A site is excluded when one of its weight names contains an exclude entry; an entry
// that matches nothing is an error (a typo would otherwise silently train everything in FP8).
export function fp8SiteMask(model: ResolvedModel, exclude: string[]): { mask: Uint8Array; excluded: number } {
  const sites = linearSiteNames(model);
  const mask = new Uint8Array(sites.length).fill(1);
  for (const pattern of exclude) {
    let hit = false;
    sites.forEach((names, i) => {
      if (names.some((n) => n.includes(pattern))) {
        mask[i] = 0;
        hit = true;
      }
    });
    if (!hit)
      throw new Error(`train.fp8.exclude: '${pattern}' matches no linear layer (names look like ` +
        `model.layers.0.self_attn.q_proj, model.layers.3.mlp.down_proj, lm_head)`);
  }
  return { mask, excluded: mask.reduce((a, b) => a + (b === 0 ? 1 : 0), 0) };
}

export function precisionOptions(cfg: Config, precision: 'fp32' | 'bf16' | 'fp8', model: ResolvedModel): PrecisionOptions {
  const f = cfg.train.fp8;
  return {
    precision,
    historyLen: f.amax_history_len,
    margin: f.margin,
    amaxAlgo: f.amax_compute_algo,
    currentScaling: f.scaling === 'current',
    fp8Sites: fp8SiteMask(model, f.exclude).mask,
  };
}
