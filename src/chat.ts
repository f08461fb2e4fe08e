// chat.ts — `ko-train chat`: a conversation with a checkpoint in the terminal. Each turn renders the whole
// history with the checkpoint's chat template (the one SFT trained with: tokenizer_config.json beside
// tokenizer.json, else ChatML), streams the reply as it is generated and stops at the template's end-of-turn
// marker or EOS. The KV cache is kept between turns, so only the new part of the history is computed.
// Reads lines from stdin, a terminal or a pipe: `/reset` clears the conversation, `/exit` (or end of input) quits.
import path from 'node:path';
import readline from 'node:readline';
import type { ChatMessage } from './chat_template.js';
import { loadModel } from './evaluate.js';
import { DecodeSession, generateBatch, type SampleOptions } from './generate.js';
import { renderCached, resolveChatTemplate, stopStringsOf, withBos } from './sft_data.js';

export interface ChatOptions extends SampleOptions {
  checkpoint: string;
  system: string | null;
  maxNewTokens: number;
  seed: number;
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
  log?: (s: string) => void; // notes that are not the conversation (stderr)
}

export async function chatCommand(o: ChatOptions): Promise<void> {
  const input = o.input ?? process.stdin;
  const output = o.output ?? process.stdout;
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const lm = loadModel(o.checkpoint);
  const tok = lm.tokenizer;
  if (!tok) throw new Error(`${o.checkpoint}: no tokenizer.json beside the weights, cannot chat`);
  const template = resolveChatTemplate(path.join(o.checkpoint, 'tokenizer.json'));
  const stops = stopStringsOf(template);
  const maxPos = lm.config.max_position_embeddings;
  const session = new DecodeSession(lm.net);
  const system: ChatMessage[] = o.system ? [{ role: 'system', content: o.system.normalize('NFC') }] : [];
  let history: ChatMessage[] = [];

  // Ids of the conversation with the generation prompt; the oldest exchanges are dropped (for good) while
  // the prompt and a full reply would not fit in max_position_embeddings. null: the last message alone is
  // too long.
  const promptOf = async (): Promise<number[] | null> => {
    for (;;) {
      const text = renderCached(template, [...system, ...history], true);
      const [enc] = await tok.encodeBatch([text]);
      const ids = Array.from(withBos(tok, enc, new Uint8Array(enc.length)).ids);
      if (ids.length + o.maxNewTokens <= maxPos || history.length <= 1) return ids.length < maxPos ? ids : null;
      const drop = history.findIndex((m, i) => i > 0 && m.role === 'user'); // the first exchange, whole
      history = history.slice(drop > 0 ? drop : history.length - 1);
      log(`(the oldest turns were dropped to fit ${maxPos} positions)`);
    }
  };

  const tty = Boolean((input as { isTTY?: boolean }).isTTY);
  const rl = readline.createInterface({ input, output: tty ? output : undefined, terminal: tty });
  rl.setPrompt('> ');
  log(`chat with ${o.checkpoint} (template: ${template.origin}; a reply ends at ${stops.map((s) => JSON.stringify(s)).join(' or ')} or EOS). /reset clears the conversation, /exit quits.`);
  if (tty) rl.prompt();
  let turn = 0;
  for await (const raw of rl) {
    const line = raw.trim().normalize('NFC');
    if (line === '/exit') break;
    if (line === '/reset') {
      history = [];
      output.write('(conversation cleared)\n');
    } else if (/^\/\w+$/.test(line)) {
      output.write(`(unknown command ${line}: /reset clears the conversation, /exit quits)\n`);
    } else if (line) {
      history.push({ role: 'user', content: line });
      const ids = await promptOf();
      if (ids === null) {
        history.pop();
        output.write(`(that message does not fit in the model's ${maxPos} positions)\n`);
      } else {
        const [r] = await generateBatch(lm, [ids], {
          temperature: o.temperature,
          topK: o.topK,
          topP: o.topP,
          maxNewTokens: o.maxNewTokens,
          seed: (o.seed + turn++) >>> 0, // a different draw each turn, the same run after run
          stop: stops,
          session,
          onText: (_, t) => output.write(t),
        });
        output.write('\n');
        history.push({ role: 'assistant', content: r.text.trim() });
      }
    }
    if (tty) rl.prompt();
  }
  rl.close();
}
