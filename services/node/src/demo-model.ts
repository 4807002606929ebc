// The demo model: a small but valid GGUF v3 `llama` model with seeded random weights, written
// byte for byte the same for the same seed. It lets a fresh machine run the whole network (real
// tokenizer, real llama.cpp inference, real token streaming) without downloading anything. Its
// output is noise, and its id says so. GGUF layout: ggml's docs/gguf.md.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32 } from '@fed-ai/protocol';

export const DEMO_MODEL_ID = 'fedai-demo-noise-v1';
export const DEMO_MODEL_FILE = `${DEMO_MODEL_ID}.gguf`;

const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Word pieces give the SentencePiece tokenizer something better than bytes to merge into.
const WORDS = (
  'the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not ' +
  'what all were we when your can said there use an each which she do how their if will up other about out many then ' +
  'them these so some her would make like him into time has look two more write go see number no way could people my ' +
  'than first water been call who oil its now find long down day did get come made may part hello world network node ' +
  'router model token price fast small answer question fed ai demo noise random please thanks yes sure good new'
).split(' ');

// Token types of the llama.cpp vocabulary.
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;

interface Shape {
  vocab: number;
  embd: number;
  ff: number;
  layers: number;
  heads: number;
  context: number;
}

const SHAPE: Shape = { vocab: 512, embd: 128, ff: 256, layers: 2, heads: 4, context: 2048 };
const ALIGNMENT = 32;

class GgufWriter {
  private readonly parts: Buffer[] = [];
  size = 0;

  push(buffer: Buffer): void {
    this.parts.push(buffer);
    this.size += buffer.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.push(bytes);
  }
  pad(): void {
    const extra = (ALIGNMENT - (this.size % ALIGNMENT)) % ALIGNMENT;
    if (extra > 0) this.push(Buffer.alloc(extra));
  }
  result(): Buffer {
    return Buffer.concat(this.parts);
  }
}

// GGUF metadata value types.
const T_UINT32 = 4;
const T_INT32 = 5;
const T_FLOAT32 = 6;
const T_BOOL = 7;
const T_STRING = 8;
const T_ARRAY = 9;

type MetaValue =
  | { t: 'u32'; v: number }
  | { t: 'f32'; v: number }
  | { t: 'bool'; v: boolean }
  | { t: 'str'; v: string }
  | { t: 'strs'; v: string[] }
  | { t: 'f32s'; v: number[] }
  | { t: 'i32s'; v: number[] };

function writeMeta(w: GgufWriter, key: string, value: MetaValue): void {
  w.str(key);
  switch (value.t) {
    case 'u32':
      w.u32(T_UINT32);
      w.u32(value.v);
      break;
    case 'f32':
      w.u32(T_FLOAT32);
      w.f32(value.v);
      break;
    case 'bool':
      w.u32(T_BOOL);
      w.push(Buffer.from([value.v ? 1 : 0]));
      break;
    case 'str':
      w.u32(T_STRING);
      w.str(value.v);
      break;
    case 'strs':
      w.u32(T_ARRAY);
      w.u32(T_STRING);
      w.u64(value.v.length);
      for (const s of value.v) w.str(s);
      break;
    case 'f32s':
      w.u32(T_ARRAY);
      w.u32(T_FLOAT32);
      w.u64(value.v.length);
      for (const f of value.v) w.f32(f);
      break;
    case 'i32s':
      w.u32(T_ARRAY);
      w.u32(T_INT32);
      w.u64(value.v.length);
      for (const i of value.v) w.i32(i);
      break;
  }
}

function vocabulary(size: number): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = ['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>'];
  const types = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL, TOKEN_CONTROL, TOKEN_CONTROL];
  const scores = [0, 0, 0, 0, 0];
  for (let byte = 0; byte < 256; byte++) {
    tokens.push(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TOKEN_BYTE);
    scores.push(0);
  }
  const pieces = new Set<string>(['▁']);
  for (const word of WORDS) {
    pieces.add(`▁${word}`);
    if (word.length > 2) pieces.add(word);
  }
  for (const c of 'abcdefghijklmnopqrstuvwxyz.,!?') pieces.add(c);
  let score = -1;
  for (const piece of pieces) {
    if (tokens.length >= size) break;
    tokens.push(piece);
    types.push(TOKEN_NORMAL);
    scores.push(score);
    score -= 0.01;
  }
  // Pad to the declared size with unused control tokens so tensor shapes stay fixed.
  while (tokens.length < size) {
    tokens.push(`<unused${tokens.length}>`);
    types.push(TOKEN_CONTROL);
    scores.push(0);
  }
  return { tokens, scores, types };
}

/** Builds the demo model's bytes. Same seed => same bytes. */
export function buildDemoModel(seed = 1): Buffer {
  const s = SHAPE;
  const random = mulberry32(seed);
  const vocab = vocabulary(s.vocab);
  const headDim = s.embd / s.heads;

  const tensors: { name: string; dims: number[]; fill: 'ones' | 'random' }[] = [
    { name: 'token_embd.weight', dims: [s.embd, s.vocab], fill: 'random' },
    { name: 'output_norm.weight', dims: [s.embd], fill: 'ones' },
    { name: 'output.weight', dims: [s.embd, s.vocab], fill: 'random' },
  ];
  for (let i = 0; i < s.layers; i++) {
    tensors.push(
      { name: `blk.${i}.attn_norm.weight`, dims: [s.embd], fill: 'ones' },
      { name: `blk.${i}.attn_q.weight`, dims: [s.embd, s.embd], fill: 'random' },
      { name: `blk.${i}.attn_k.weight`, dims: [s.embd, s.embd], fill: 'random' },
      { name: `blk.${i}.attn_v.weight`, dims: [s.embd, s.embd], fill: 'random' },
      { name: `blk.${i}.attn_output.weight`, dims: [s.embd, s.embd], fill: 'random' },
      { name: `blk.${i}.ffn_norm.weight`, dims: [s.embd], fill: 'ones' },
      { name: `blk.${i}.ffn_gate.weight`, dims: [s.embd, s.ff], fill: 'random' },
      { name: `blk.${i}.ffn_up.weight`, dims: [s.embd, s.ff], fill: 'random' },
      { name: `blk.${i}.ffn_down.weight`, dims: [s.ff, s.embd], fill: 'random' },
    );
  }

  const meta: [string, MetaValue][] = [
    ['general.architecture', { t: 'str', v: 'llama' }],
    ['general.name', { t: 'str', v: `${DEMO_MODEL_ID} (random weights: output is noise)` }],
    ['general.alignment', { t: 'u32', v: ALIGNMENT }],
    ['llama.context_length', { t: 'u32', v: s.context }],
    ['llama.embedding_length', { t: 'u32', v: s.embd }],
    ['llama.block_count', { t: 'u32', v: s.layers }],
    ['llama.feed_forward_length', { t: 'u32', v: s.ff }],
    ['llama.attention.head_count', { t: 'u32', v: s.heads }],
    ['llama.attention.head_count_kv', { t: 'u32', v: s.heads }],
    ['llama.attention.layer_norm_rms_epsilon', { t: 'f32', v: 1e-5 }],
    ['llama.rope.dimension_count', { t: 'u32', v: headDim }],
    ['llama.vocab_size', { t: 'u32', v: s.vocab }],
    ['tokenizer.ggml.model', { t: 'str', v: 'llama' }],
    ['tokenizer.ggml.tokens', { t: 'strs', v: vocab.tokens }],
    ['tokenizer.ggml.scores', { t: 'f32s', v: vocab.scores }],
    ['tokenizer.ggml.token_type', { t: 'i32s', v: vocab.types }],
    ['tokenizer.ggml.unknown_token_id', { t: 'u32', v: 0 }],
    ['tokenizer.ggml.bos_token_id', { t: 'u32', v: 1 }],
    ['tokenizer.ggml.eos_token_id', { t: 'u32', v: 4 }],
    ['tokenizer.ggml.add_bos_token', { t: 'bool', v: true }],
    ['tokenizer.ggml.add_eos_token', { t: 'bool', v: false }],
    ['tokenizer.chat_template', { t: 'str', v: CHATML_TEMPLATE }],
  ];

  const w = new GgufWriter();
  w.push(Buffer.from('GGUF', 'ascii'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(meta.length);
  for (const [key, value] of meta) writeMeta(w, key, value);

  const GGML_TYPE_F32 = 0;
  let offset = 0;
  const offsets: number[] = [];
  for (const tensor of tensors) {
    w.str(tensor.name);
    w.u32(tensor.dims.length);
    for (const d of tensor.dims) w.u64(d);
    w.u32(GGML_TYPE_F32);
    w.u64(offset);
    offsets.push(offset);
    const bytes = tensor.dims.reduce((a, b) => a * b, 1) * 4;
    offset += Math.ceil(bytes / ALIGNMENT) * ALIGNMENT;
  }
  w.pad();
  for (const tensor of tensors) {
    const count = tensor.dims.reduce((a, b) => a * b, 1);
    const data = Buffer.alloc(Math.ceil((count * 4) / ALIGNMENT) * ALIGNMENT);
    // Scale like a normal init (about 1/sqrt(fan_in)) so activations stay finite.
    const scale = 1 / Math.sqrt(tensor.dims[0] ?? 1);
    for (let i = 0; i < count; i++) {
      data.writeFloatLE(tensor.fill === 'ones' ? 1 : (random() * 2 - 1) * scale * 1.7, i * 4);
    }
    w.push(data);
  }
  return w.result();
}

export function writeDemoModel(
  path: string,
  options: { seed?: number } = {},
): { path: string; sha256: string } {
  const bytes = buildDemoModel(options.seed ?? 1);
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, bytes);
  renameSync(temp, path); // atomic: a concurrent reader never sees half a model
  return { path, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** Writes the demo model into `dir` unless it is already there; returns its path. */
export function ensureDemoModel(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, DEMO_MODEL_FILE);
  if (!existsSync(path)) writeDemoModel(path);
  return path;
}
