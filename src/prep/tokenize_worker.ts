// tokenize_worker.ts — a worker thread that encodes batches of documents with the `tokenizers` package and
// hands back one packed token array per batch (transferred, not copied).
import { parentPort, workerData } from 'node:worker_threads';
import { TextTokenizer } from '../tokenizer.js';

const tok = TextTokenizer.fromFile((workerData as { tokenizer: string }).tokenizer);

parentPort!.on('message', async (msg: { seq: number; texts: string[] }) => {
  try {
    const enc = await tok.encodeBatch(msg.texts);
    const offsets = new Uint32Array(enc.length + 1);
    enc.forEach((e, i) => (offsets[i + 1] = offsets[i] + e.length + 1));
    const tokens = new Uint32Array(offsets[enc.length]);
    enc.forEach((e, i) => {
      tokens.set(e, offsets[i]);
      tokens[offsets[i + 1] - 1] = tok.eosId; // end-of-text after every document
    });
    parentPort!.postMessage({ seq: msg.seq, tokens, offsets }, [tokens.buffer, offsets.buffer]);
  } catch (e) {
    parentPort!.postMessage({ seq: msg.seq, error: (e as Error).message });
  }
});
