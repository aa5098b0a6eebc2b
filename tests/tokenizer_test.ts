import assert from "node:assert/strict";
import {
  byteTokenizer,
  checkIds,
  createTextStream,
  loadTokenizer,
  readTokenizerConfig,
  type Tokenizer,
} from "../io/tokenizer.ts";
import { applyChatTemplate, type ChatMessage, chatTemplateOf } from "../io/chat.ts";
import { TokenizerError } from "../gpu/errors.ts";

const FIXTURES = new URL("./fixtures/tokenizers/", import.meta.url);
const fixture = (kind: string) => new URL(`${kind}/`, FIXTURES);

interface Case {
  text: string;
  ids: number[];
  ids_no_special?: number[];
  decoded: string;
  decoded_skip?: string;
}

const kinds = [...Deno.readDirSync(FIXTURES)].filter((e) => e.isDirectory).map((e) => e.name)
  .sort();
const casesOf = (kind: string): Case[] =>
  JSON.parse(Deno.readTextFileSync(new URL("cases.json", fixture(kind))));

// Its own seeded generator: tests/helpers.ts pulls in the GPU modules.
function rng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

function throwsTokenizerError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TokenizerError, `expected a TokenizerError, got ${e}`);
    assert.match(e.message, message);
    return true;
  });
}

async function rejectsTokenizerError(p: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TokenizerError, `expected a TokenizerError, got ${e}`);
    assert.match(e.message, message);
    return true;
  });
}

/** Streams `ids` in chunks of the given sizes; returns the chunks and the flush. */
function streamChunks(
  tok: Tokenizer,
  ids: number[],
  sizes: (i: number) => number,
  skipSpecialTokens: boolean,
): string[] {
  const stream = createTextStream(tok, { skipSpecialTokens });
  const out: string[] = [];
  for (let i = 0; i < ids.length;) {
    const n = Math.max(1, sizes(i));
    out.push(stream.push(ids.slice(i, i + n)));
    i += n;
  }
  out.push(stream.flush());
  return out;
}

function assertStreamMatches(tok: Tokenizer, ids: number[], seed: number, what: string): void {
  const r = rng(seed);
  const modes: [string, (i: number) => number][] = [
    ["one id at a time", () => 1],
    ["random chunks of 1..8", () => 1 + r(8)],
    ["all at once", () => ids.length],
  ];
  for (const skipSpecialTokens of [false, true]) {
    const whole = tok.decode(ids, { skipSpecialTokens });
    for (const [mode, sizes] of modes) {
      const chunks = streamChunks(tok, ids, sizes, skipSpecialTokens);
      const where = `${what}, ${mode}, skipSpecialTokens ${skipSpecialTokens}`;
      for (const c of chunks) assert.ok(c.isWellFormed(), `${where}: chunk splits a character`);
      assert.equal(chunks.join(""), whole, where);
    }
  }
}

for (const kind of kinds) {
  Deno.test(`loadTokenizer() matches Python tokenizers on the ${kind} fixtures`, async () => {
    const tok = await loadTokenizer(fixture(kind));
    const cases = casesOf(kind);
    assert.ok(cases.length > 0);
    for (const c of cases) {
      const text = JSON.stringify(c.text).slice(0, 60);
      assert.deepEqual(tok.encode(c.text), c.ids, `encode ${text}`);
      assert.deepEqual(
        tok.encode(c.text, { addSpecialTokens: false }),
        c.ids_no_special ?? c.ids,
        `encode without special tokens ${text}`,
      );
      assert.equal(tok.decode(c.ids), c.decoded, `decode ${text}`);
      assert.equal(
        tok.decode(c.ids, { skipSpecialTokens: true }),
        c.decoded_skip ?? c.decoded,
        `decode skipping special tokens ${text}`,
      );
    }
    const meta = new URL("meta.json", fixture(kind));
    const hasMeta = await Deno.stat(meta).then(() => true, () => false);
    if (hasMeta) {
      assert.equal(tok.vocabSize, JSON.parse(await Deno.readTextFile(meta)).vocab_size);
    }
  });

  Deno.test(`createTextStream() output joins to decode() on the ${kind} fixtures`, async () => {
    const tok = await loadTokenizer(fixture(kind));
    casesOf(kind).forEach((c, i) => assertStreamMatches(tok, c.ids, 1000 + i, `case ${i}`));
  });
}

Deno.test("the fixtures cover the three tokenizer families and the hand-written ones", () => {
  for (const kind of ["tiny", "tiny_byte_level", "bpe", "byte_level_bpe", "unigram"]) {
    assert.ok(kinds.includes(kind), `tests/fixtures/tokenizers/${kind} is missing`);
  }
});

Deno.test("loadTokenizer() reads bos, eos and the chat template from the config files", async () => {
  const tiny = await loadTokenizer(fixture("tiny"));
  assert.deepEqual([tiny.bosId, tiny.eosIds, tiny.bosToken, tiny.eosToken], [
    1,
    [2],
    "<s>",
    "</s>",
  ]);
  assert.equal(tiny.vocabSize, 278);
  assert.equal(tiny.tokenToId("▁hello"), 272);
  assert.equal(tiny.idToToken(272), "▁hello");
  assert.equal(tiny.idToToken(5000), undefined);
  assert.deepEqual([tiny.isSpecial(1), tiny.isSpecial(272)], [true, false]);
  assert.match(tiny.chatTemplate ?? "", /^\{\{ bos_token \}\}.*\[INST\]/);
  const chatml = await loadTokenizer(fixture("byte_level_bpe"));
  assert.deepEqual([chatml.bosId, chatml.eosIds], [undefined, [chatml.tokenToId("<|im_end|>")]]);
  const unigram = await loadTokenizer(fixture("unigram"));
  assert.equal(unigram.chatTemplate, undefined);
});

Deno.test("loadTokenizer() takes paths, file: URLs and the tokenizer.json itself", async () => {
  const path = new URL("tiny", FIXTURES).pathname;
  for (const where of [path, `${path}/`, `${path}/tokenizer.json`, fixture("tiny").href]) {
    const tok = await loadTokenizer(where);
    assert.deepEqual(tok.encode("hello world"), [1, 272, 277], where);
  }
});

Deno.test("loadTokenizer() fetches http(s) URLs and treats a 404 as a missing file", async () => {
  const served: string[] = [];
  const root = new URL("tiny/", FIXTURES);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const name = new URL(req.url).pathname.replace(/^\/model\//, "");
    served.push(name);
    try {
      return new Response(await Deno.readFile(new URL(name, root)));
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  try {
    const tok = await loadTokenizer(`http://127.0.0.1:${server.addr.port}/model`);
    assert.deepEqual(tok.encode("hello"), [1, 272]);
    assert.equal(tok.bosId, 1);
    assert.ok(served.includes("generation_config.json"), "optional files are asked for");
    await rejectsTokenizerError(
      loadTokenizer(`http://127.0.0.1:${server.addr.port}/model/missing/`),
      /no tokenizer\.json at http:\/\/127\.0\.0\.1:\d+\/model\/missing\/tokenizer\.json/,
    );
  } finally {
    await server.shutdown();
  }
});

Deno.test("loadTokenizer() errors name the file and say what to do", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await rejectsTokenizerError(
      loadTokenizer(dir),
      new RegExp(`no tokenizer\\.json at ${dir}/tokenizer\\.json: point loadTokenizer`),
    );
    await Deno.writeTextFile(`${dir}/tokenizer.json`, '{"model": {"type": "BPE", "vocab": {');
    await rejectsTokenizerError(
      loadTokenizer(dir),
      new RegExp(`${dir}/tokenizer\\.json is not valid JSON .*download it again`),
    );
    await Deno.writeTextFile(`${dir}/tokenizer.json`, "[1, 2]");
    await rejectsTokenizerError(loadTokenizer(dir), /must hold a JSON object, got an array of 2/);
    await Deno.writeTextFile(`${dir}/tokenizer.json`, '{"model": {"type": "Nope"}}');
    await rejectsTokenizerError(
      loadTokenizer(dir),
      new RegExp(`${dir}/tokenizer\\.json could not be built.*the string "Nope"`),
    );
    await Deno.copyFile(new URL("tiny/tokenizer.json", FIXTURES), `${dir}/tokenizer.json`);
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, "{oops");
    await rejectsTokenizerError(
      loadTokenizer(dir),
      new RegExp(`${dir}/tokenizer_config\\.json is not valid JSON`),
    );
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, '{"eos_token": "<|eot|>"}');
    await rejectsTokenizerError(
      loadTokenizer(dir),
      /tokenizer_config\.json names eos_token "<\|eot\|>", which .*tokenizer\.json does not have/,
    );
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, '{"chat_template": 7}');
    await rejectsTokenizerError(loadTokenizer(dir), /chat_template must be a string or a list/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decode() ignores transformers' clean_up_tokenization_spaces, as Python does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(new URL("tiny/tokenizer.json", FIXTURES), `${dir}/tokenizer.json`);
    const config = { bos_token: "<s>", clean_up_tokenization_spaces: true };
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
    const tok = await loadTokenizer(dir);
    const ids = tok.encode("hello . world 's", { addSpecialTokens: false });
    assert.equal(tok.decode(ids), "hello . world 's");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ids outside the vocabulary are TokenizerErrors naming the id and the size", async () => {
  const tok = await loadTokenizer(fixture("tiny"));
  throwsTokenizerError(
    () => tok.decode([1, 278]),
    /tiny\/: decode\(\): token id 278 \(at index 1\) is outside the vocabulary of 278 ids/,
  );
  throwsTokenizerError(() => tok.decode([-1]), /token id -1 .*\(valid ids are 0\.\.277\)/);
  throwsTokenizerError(() => tok.decode([1.5]), /token id 1\.5/);
  throwsTokenizerError(
    () => createTextStream(tok).push([272, 9999]),
    /createTextStream\(\)\.push\(\): token id 9999/,
  );
  throwsTokenizerError(
    () => checkIds([5, 70000], 32000, "model.safetensors"),
    /^model\.safetensors: token id 70000 \(at index 1\) is outside the vocabulary of 32000 ids/,
  );
  throwsTokenizerError(
    () => checkIds("12" as unknown as number[], 10, "x"),
    /must be an array of integers/,
  );
  checkIds(new Uint32Array([0, 31999]), 32000, "readback");
  throwsTokenizerError(() => tok.encode(5 as unknown as string), /takes a string, got 5/);
});

Deno.test("createTextStream() holds back an incomplete character instead of showing U+FFFD", async () => {
  const tok = await loadTokenizer(fixture("tiny"));
  // "😀" takes the byte path: ▁ then the four bytes F0 9F 98 80.
  const ids = tok.encode("hello 😀 world", { addSpecialTokens: false });
  const stream = createTextStream(tok);
  const chunks = ids.map((id) => stream.push([id]));
  chunks.push(stream.flush());
  assert.deepEqual(chunks, ["hello", " ", "", "", "", "😀", " world", ""]);
});

Deno.test("createTextStream() keeps SentencePiece leading spaces right one id at a time", async () => {
  const tok = await loadTokenizer(fixture("tiny"));
  const ids = [272, 277, 272];
  assert.deepEqual(ids.map((id) => tok.decode([id])), ["hello", "world", "hello"]);
  const stream = createTextStream(tok);
  assert.deepEqual(ids.map((id) => stream.push([id])), ["hello", " world", " hello"]);
  const skip = createTextStream(tok, { skipSpecialTokens: true });
  assert.deepEqual([1, 272, 2, 277].map((id) => skip.push([id])), ["", "hello", "", " world"]);
});

Deno.test("createTextStream() decodes a bounded window however long the output", async () => {
  const tok = await loadTokenizer(fixture("bpe"));
  let longest = 0;
  const counting: Tokenizer = {
    ...tok,
    encode: (t, o) => tok.encode(t, o),
    tokenToId: (t) => tok.tokenToId(t),
    idToToken: (id) => tok.idToToken(id),
    isSpecial: (id) => tok.isSpecial(id),
    decode(ids, options) {
      longest = Math.max(longest, ids.length);
      return tok.decode(ids, options);
    },
  };
  const ids = casesOf("bpe").flatMap((c) => c.ids);
  assert.ok(ids.length > 5000);
  const r = rng(7);
  const text = streamChunks(counting, ids, () => 1 + r(4), false).join("");
  assert.equal(text, tok.decode(ids));
  // A window is the previous chunk plus the new one, and a character spans at most 4 byte ids.
  assert.ok(longest <= 16, `longest window ${longest}`);
});

Deno.test("createTextStream() stays exact when chunks never line up with characters", async () => {
  // Chunks of 17 or 33 ids end inside a 4-byte character for more than 64 ids in a row.
  for (const tok of [byteTokenizer(), await loadTokenizer(fixture("tiny"))]) {
    const ids = tok.encode("😀".repeat(100) + " end", { addSpecialTokens: false });
    for (const size of [17, 33]) {
      const chunks = streamChunks(tok, ids, () => size, false);
      assert.ok(chunks.every((c) => !c.includes("\uFFFD")), `${tok.source}, chunks of ${size}`);
      assert.equal(chunks.join(""), tok.decode(ids), `${tok.source}, chunks of ${size}`);
    }
  }
});

Deno.test("byteTokenizer() round-trips random unicode and streams it whole", () => {
  const tok = byteTokenizer();
  const r = rng(42);
  const planes = [0x80, 0x800, 0x10000, 0x110000];
  for (let n = 0; n < 200; n++) {
    const cps = Array.from({ length: r(40) }, () => {
      const cp = r(planes[r(4)]);
      return cp >= 0xd800 && cp < 0xe000 ? 0x41 : cp; // no lone surrogates
    });
    const text = String.fromCodePoint(...cps);
    const ids = tok.encode(text);
    assert.deepEqual(ids, [...new TextEncoder().encode(text)]);
    assert.equal(tok.decode(ids), text);
    assertStreamMatches(tok, ids, n, `random text ${n}`);
  }
});

Deno.test("byteTokenizer() streams invalid bytes to the same text as decode()", () => {
  const tok = byteTokenizer();
  const r = rng(3);
  for (let n = 0; n < 50; n++) {
    const ids = Array.from({ length: 1 + r(200) }, () => r(256));
    assertStreamMatches(tok, ids, n, `random bytes ${n}`);
  }
});

Deno.test("byteTokenizer() special tokens extend the vocabulary only where given", () => {
  const plain = byteTokenizer();
  assert.deepEqual([plain.vocabSize, plain.bosId, plain.eosIds], [256, undefined, []]);
  assert.deepEqual(plain.encode("hé"), [104, 195, 169]);
  throwsTokenizerError(() => plain.decode([256]), /token id 256 .* vocabulary of 256 ids/);
  const tok = byteTokenizer({ bos: 300, eos: 256 });
  assert.deepEqual([tok.vocabSize, tok.bosId, tok.eosIds], [301, 300, [256]]);
  assert.deepEqual(tok.encode("a"), [300, 97]);
  assert.deepEqual(tok.encode("a", { addSpecialTokens: false }), [97]);
  assert.equal(tok.decode([300, 104, 195, 169, 256]), "<bos>hé<eos>");
  assert.equal(tok.decode([300, 104, 280, 256], { skipSpecialTokens: true }), "h");
  // A special token between the halves of a character keeps them apart, as HF's decoder does.
  assert.equal(tok.decode([195, 256, 169]), "\uFFFD<eos>\uFFFD");
  assert.deepEqual([tok.tokenToId("<0x41>"), tok.tokenToId("<eos>"), tok.idToToken(10)], [
    65,
    256,
    "<0x0A>",
  ]);
  throwsTokenizerError(() => byteTokenizer({ eos: 12 }), /eos must be an integer id >= 256/);
  throwsTokenizerError(() => byteTokenizer({ bos: 256, eos: 256 }), /bos and eos must differ/);
});

const CONVERSATION: ChatMessage[] = [
  { role: "user", content: "Hi there " },
  { role: "assistant", content: "Hello!" },
  { role: "user", content: "2+2?" },
];

Deno.test("applyChatTemplate() renders the model's templates as transformers does", async () => {
  const tiny = await loadTokenizer(fixture("tiny"));
  const opts = { bosToken: tiny.bosToken, eosToken: tiny.eosToken };
  assert.equal(
    applyChatTemplate(await chatTemplateOf(tiny), CONVERSATION, opts),
    "<s>[INST] Hi there [/INST] Hello! </s>[INST] 2+2? [/INST]",
  );
  const chatml = await chatTemplateOf(fixture("byte_level_bpe"));
  const messages = [{ role: "system", content: "You are terse." }, { role: "user", content: "Hi" }];
  assert.equal(
    applyChatTemplate(chatml, messages),
    "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" +
      "<|im_start|>assistant\n",
  );
  assert.equal(
    applyChatTemplate(chatml, messages, { addGenerationPrompt: false }),
    "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
  );
  assert.equal(
    applyChatTemplate("{{ greeting }}, {{ messages[0].name }}", [
      { role: "user", content: "", name: "Ada" },
    ], { variables: { greeting: "Hello" } }),
    "Hello, Ada",
  );
});

for (const kind of kinds) {
  const file = new URL("chat.json", fixture(kind));
  let chat: {
    messages: ChatMessage[];
    add_generation_prompt: boolean;
    expected?: string;
    error?: string;
  }[];
  try {
    chat = JSON.parse(Deno.readTextFileSync(file));
  } catch {
    continue;
  }
  Deno.test(`applyChatTemplate() matches Python jinja2 on the ${kind} chat fixtures`, async () => {
    const tok = await loadTokenizer(fixture(kind));
    const template = await chatTemplateOf(tok);
    assert.ok(chat.length > 0);
    for (const c of chat) {
      const render = () =>
        applyChatTemplate(template, c.messages, {
          addGenerationPrompt: c.add_generation_prompt,
          bosToken: tok.bosToken,
          eosToken: tok.eosToken,
          source: tok.source,
        });
      if (c.expected !== undefined) assert.equal(render(), c.expected);
      else throwsTokenizerError(render, new RegExp(RegExp.escape(c.error ?? "")));
    }
  });
}

Deno.test("applyChatTemplate() errors are TokenizerErrors that say what was wrong", async () => {
  const template = await chatTemplateOf(fixture("tiny"));
  throwsTokenizerError(
    () => applyChatTemplate(template, [CONVERSATION[1]], { source: "tiny" }),
    /^tiny failed to render the messages: Conversation roles must alternate/,
  );
  const bad: [unknown, RegExp][] = [
    ["hi", /messages must be an array of \{ role, content \} objects, got the string "hi"/],
    [[], /messages is empty/],
    [[null], /messages\[0\] must be an object with string role and content, got null/],
    [[{ role: "user" }], /messages\[0\]\.content must be a string, got undefined/],
    [[{ role: "user", content: "a" }, { role: 1, content: "b" }], /messages\[1\]\.role .* got 1/],
  ];
  for (const [messages, message] of bad) {
    throwsTokenizerError(() => applyChatTemplate(template, messages as ChatMessage[]), message);
  }
  throwsTokenizerError(
    () => applyChatTemplate("{% for %}", CONVERSATION, { source: "x/tokenizer_config.json" }),
    /^x\/tokenizer_config\.json does not parse as a Jinja template/,
  );
});

Deno.test("chatTemplateOf() a model without one says to pass a plain prompt", async () => {
  const unigram = fixture("unigram");
  await rejectsTokenizerError(
    chatTemplateOf(unigram),
    /unigram\/tokenizer_config\.json: the model has no chat template .*pass a plain prompt/,
  );
  await rejectsTokenizerError(
    chatTemplateOf(byteTokenizer()),
    /^byteTokenizer\(\): the model has no chat template/,
  );
});

Deno.test("chatTemplateOf() prefers chat_template.jinja and takes the list's default", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const list = [{ name: "tool_use", template: "T" }, { name: "default", template: "D" }];
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ chat_template: list }),
    );
    assert.equal(await chatTemplateOf(dir), "D");
    assert.deepEqual((await readTokenizerConfig(dir)).chatTemplates, {
      tool_use: "T",
      default: "D",
    });
    await Deno.writeTextFile(`${dir}/chat_template.jinja`, "J");
    assert.equal(await chatTemplateOf(dir), "J");
    await Deno.remove(`${dir}/chat_template.jinja`);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ chat_template: [list[0]] }),
    );
    await rejectsTokenizerError(chatTemplateOf(dir), /list has "tool_use" but no "default"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
