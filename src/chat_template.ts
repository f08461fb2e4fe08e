// chat_template.ts — chat messages rendered with the tokenizer's own Jinja chat template, as
// transformers' apply_chat_template does (template and special tokens from tokenizer_config.json,
// rendered by @huggingface/jinja), so SFT data, `chat` and eval prompts match what the model was tuned on.
import fs from 'node:fs';
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: string;
  content: string;
  reasoning_content?: string;
}

export interface ChatTemplate {
  source: string; // the template text
  bosToken: string;
  eosToken: string;
}

function tokenText(t: unknown): string {
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && typeof (t as { content?: unknown }).content === 'string') return (t as { content: string }).content;
  return '';
}

/** The chat template of a tokenizer_config.json (a string, or the "default" entry of a named list). */
export function loadChatTemplate(tokenizerConfigFile: string): ChatTemplate {
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(fs.readFileSync(tokenizerConfigFile, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${tokenizerConfigFile}: cannot read tokenizer config (${(e as Error).message})`);
  }
  let t = cfg.chat_template;
  if (Array.isArray(t)) t = (t as Array<{ name: string; template: string }>).find((x) => x.name === 'default')?.template;
  if (typeof t !== 'string' || !t) throw new Error(`${tokenizerConfigFile}: no chat_template`);
  return { source: t, bosToken: tokenText(cfg.bos_token), eosToken: tokenText(cfg.eos_token) };
}

export function renderChat(t: ChatTemplate, messages: ChatMessage[], o: { addGenerationPrompt: boolean; enableThinking?: boolean; extra?: Record<string, unknown> }): string {
  if (!messages.length) throw new Error('renderChat: no messages');
  for (const [i, m] of messages.entries())
    if (typeof m.role !== 'string' || typeof m.content !== 'string') throw new Error(`renderChat: message ${i} needs string "role" and "content"`);
  const vars: Record<string, unknown> = {
    messages,
    add_generation_prompt: o.addGenerationPrompt,
    bos_token: t.bosToken,
    eos_token: t.eosToken,
    ...(o.enableThinking === undefined ? {} : { enable_thinking: o.enableThinking }),
    ...o.extra,
  };
  return new Template(t.source).render(vars);
}
