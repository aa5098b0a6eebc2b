import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { CheckpointError } from "../gpu/errors.ts";
import {
  decodeToF16Bits,
  decodeToF32,
  type Dtype,
  dtypeSize,
  openCheckpoint,
  openSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from "../io/safetensors.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

/**
 * Deno.test with the resource and op sanitizers on (Deno 2.9 leaves them off by default): a file
 * handle left open on an error path fails the test.
 */
function test(name: string, fn: () => void | Promise<void>): void {
  Deno.test({ name, fn, sanitizeResources: true, sanitizeOps: true });
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "safetensors_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

const utf8 = (text: string) => new TextEncoder().encode(text);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A file in the format's layout: u64 LE header length (or `length`), header, data. */
function fileBytes(header: string | Uint8Array, data: Uint8Array, length?: bigint): Uint8Array {
  const headerBytes = typeof header === "string" ? utf8(header) : header;
  const field = new Uint8Array(8);
  new DataView(field.buffer).setBigUint64(0, length ?? BigInt(headerBytes.length), true);
  return concat(field, headerBytes, data);
}

/** Runs `fn`, which must reject with a CheckpointError; returns its message. */
async function checkpointError(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof CheckpointError, `expected a CheckpointError, got ${e}`);
    return e.message;
  }
  assert.fail("expected a CheckpointError, but nothing was thrown");
}

function bytesOf(a: Float32Array | Uint16Array | Int32Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

function bits16(values: number[]): Uint8Array {
  return bytesOf(Uint16Array.from(values));
}

// ---------------------------------------------------------------------------------------------
// Round trip

function sampleTensors(): TensorToWrite[] {
  const f32 = Float32Array.from({ length: 15 }, (_, i) => Math.sin(i) * 1e3);
  const unaligned = Float32Array.of(-1.5, 3e-40); // written as raw bytes after an odd-sized tensor
  const wide = Uint16Array.from({ length: 10 }, (_, i) => 0x3f80 + i);
  return [
    { name: "f32.matrix", dtype: "F32", shape: [3, 5], data: f32 },
    { name: "f32.scalar", dtype: "F32", shape: [], data: Float32Array.of(3.25) },
    {
      name: "f16.vector",
      dtype: "F16",
      shape: [7],
      data: Uint16Array.of(0x3c00, 0xc000, 0x7bff, 1, 0x7c00, 0xfc00, 0x7e00),
    },
    // A subarray, so the writer must honour byteOffset.
    { name: "bf16.cube", dtype: "BF16", shape: [2, 3, 1], data: wide.subarray(3, 9) },
    { name: "i32", dtype: "I32", shape: [4], data: Int32Array.of(-1, 0, 2 ** 31 - 1, -(2 ** 31)) },
    { name: "u8.empty", dtype: "U8", shape: [0], data: new Uint8Array(0) },
    { name: "u8.odd", dtype: "U8", shape: [5], data: Uint8Array.of(1, 2, 3, 254, 255) },
    { name: "f32.unaligned", dtype: "F32", shape: [2, 1], data: bytesOf(unaligned) },
    { name: "f16.zero.size", dtype: "F16", shape: [2, 0, 3], data: new Uint16Array(0) },
    { name: "naïve ✓ name", dtype: "U8", shape: [1, 1, 1, 1], data: Uint8Array.of(42) },
  ];
}

test("writeSafetensors() and openSafetensors() round-trip every dtype byte for byte", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "round.safetensors");
    const tensors = sampleTensors();
    const metadata = { format: "pt", note: "ünïcode ✓", empty: "" };
    await writeSafetensors(path, tensors, metadata);
    const st = await openSafetensors(path);
    try {
      assert.equal(st.path, path);
      assert.deepEqual(st.metadata, metadata);
      assert.deepEqual([...st.tensors.keys()], tensors.map((t) => t.name));
      for (const t of tensors) {
        const info = st.tensors.get(t.name)!;
        assert.equal(info.name, t.name);
        assert.equal(info.dtype, t.dtype);
        assert.deepEqual(info.shape, t.shape);
        assert.equal(info.byteLength, t.data.byteLength);
        assert.equal(info.file, path);
        assert.deepEqual(await st.read(t.name), bytesOf(t.data), t.name);
      }
      const unaligned = st.tensors.get("f32.unaligned")!;
      assert.equal(unaligned.byteOffset % 4, 3, "the test wants this tensor at an odd offset");
      assert.deepEqual(
        decodeToF32(await st.read("f32.unaligned"), "F32"),
        Float32Array.of(-1.5, 3e-40),
      );
    } finally {
      st.close();
    }
    assert.deepEqual(await listDir(dir), ["round.safetensors"], "no temp file is left behind");
  });
});

test("writeSafetensors() lays out the file as the format requires", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "layout.safetensors");
    const tensors = sampleTensors();
    await writeSafetensors(path, tensors, { format: "pt" });
    const bytes = await Deno.readFile(path);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal(n % 8, 0, "the header is padded to a multiple of 8 bytes");
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    assert.match(text, /^\{"__metadata__":\{"format":"pt"\},"f32\.matrix":/);
    assert.match(text, /\} *$/);
    const header = JSON.parse(text);
    let offset = 0;
    for (const t of tensors) {
      assert.deepEqual(header[t.name].data_offsets, [offset, offset + t.data.byteLength]);
      offset += t.data.byteLength;
    }
    // The Python reader refuses bytes after the last tensor: the data section must end there.
    assert.equal(bytes.length, 8 + n + offset);
  });
});

test("writeSafetensors() matches the reference implementation's test vectors", async () => {
  // From huggingface/safetensors, safetensors/src/tensor.rs: test_serialization,
  // test_serialization_forced_alignement and test_empty.
  const six = Float32Array.of(0, 1, 2, 3, 4, 5);
  // deno-fmt-ignore
  const reference: [TensorToWrite[], Record<string, string> | undefined, number[]][] = [
    [
      [{ name: "attn.0", dtype: "F32", shape: [1, 2, 3], data: six }],
      undefined,
      [
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116,
        121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49,
        44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34,
        58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64,
        0, 0, 128, 64, 0, 0, 160, 64,
      ],
    ],
    [
      [{ name: "attn0", dtype: "F32", shape: [1, 1, 2, 3], data: six }],
      undefined,
      [
        72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116, 121,
        112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44,
        49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115,
        34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32, 32, 32, 0, 0, 0, 0, 0, 0,
        128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
      ],
    ],
    [[], undefined, [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]],
    [
      [],
      { framework: "pt" },
      [
        40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34,
        58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112, 116, 34, 125,
        125, 32, 32, 32, 32, 32,
      ],
    ],
  ];
  await withTempDir(async (dir) => {
    const path = join(dir, "reference.safetensors");
    for (const [tensors, metadata, expected] of reference) {
      await writeSafetensors(path, tensors, metadata);
      assert.deepEqual(await Deno.readFile(path), Uint8Array.from(expected));
    }
  });
});

test("openSafetensors() reads a file built byte by byte from the format spec", async () => {
  // Keys out of data order, __metadata__ in the middle, whitespace, a 4-byte hole between a and
  // b: all allowed by the format, none produced by our writer.
  const header = '{\n  "b": {"data_offsets": [8, 12], "shape": [2], "dtype": "BF16"},\n' +
    '  "__metadata__": {"source": "hand"},\n' +
    '  "a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},\n' +
    '  "h": {"shape": [1, 1], "dtype": "F16", "data_offsets": [12, 14]}\n}';
  const n = utf8(header).length;
  assert.ok(n < 256);
  const data = [
    ...[0x00, 0x00, 0x80, 0x3f], // a: f32 1.0
    ...[0xde, 0xad, 0xbe, 0xef], // hole
    ...[0x00, 0xc0, 0x80, 0x3f], // b: bf16 -2, 1
    ...[0xff, 0x7b], // h: f16 65504
  ];
  const bytes = Uint8Array.from([n, 0, 0, 0, 0, 0, 0, 0, ...utf8(header), ...data]);
  await withTempDir(async (dir) => {
    const path = join(dir, "hand.safetensors");
    await Deno.writeFile(path, bytes);
    const st = await openSafetensors(path);
    try {
      assert.deepEqual(st.metadata, { source: "hand" });
      assert.deepEqual([...st.tensors.keys()], ["a", "b", "h"], "tensors come in file order");
      assert.deepEqual(st.tensors.get("a"), {
        name: "a",
        dtype: "F32",
        shape: [],
        byteOffset: 8 + n,
        byteLength: 4,
        file: path,
      });
      assert.equal(st.tensors.get("b")!.byteOffset, 8 + n + 8);
      assert.deepEqual(await st.read("a"), Uint8Array.of(0x00, 0x00, 0x80, 0x3f));
      assert.deepEqual(decodeToF32(await st.read("a"), "F32"), Float32Array.of(1));
      assert.deepEqual(decodeToF32(await st.read("b"), "BF16"), Float32Array.of(-2, 1));
      assert.deepEqual(decodeToF32(await st.read("h"), "F16"), Float32Array.of(65504));
    } finally {
      st.close();
    }
  });
});

test("openSafetensors() serves concurrent reads with the right bytes", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "concurrent.safetensors");
    const tensors = sampleTensors();
    await writeSafetensors(path, tensors);
    const st = await openSafetensors(path);
    try {
      const all = await Promise.all(tensors.map((t) => st.read(t.name)));
      tensors.forEach((t, i) => assert.deepEqual(all[i], bytesOf(t.data), t.name));
    } finally {
      st.close();
    }
  });
});

test("openSafetensors() opens a file: URL", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "url.safetensors");
    await writeSafetensors(path, [{ name: "x", dtype: "I32", shape: [1], data: Int32Array.of(7) }]);
    const st = await openSafetensors(pathToFileURL(path));
    try {
      assert.equal(st.path, path);
      assert.deepEqual(await st.read("x"), bytesOf(Int32Array.of(7)));
    } finally {
      st.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Writer failures

test("writeSafetensors() failing on a third tensor leaves no target and no temp file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "bad.safetensors");
    const message = await checkpointError(() =>
      writeSafetensors(path, [
        { name: "one", dtype: "F32", shape: [2], data: new Float32Array(2) },
        { name: "two", dtype: "U8", shape: [3], data: new Uint8Array(3) },
        { name: "three", dtype: "F32", shape: [2, 2], data: new Float32Array(3) },
        { name: "four", dtype: "U8", shape: [1], data: new Uint8Array(1) },
      ])
    );
    assert.ok(message.includes(path), message);
    assert.match(message, /"three".*need 16 bytes, but data has 12/);
    assert.deepEqual(await listDir(dir), []);
  });
});

test("writeSafetensors() that fails keeps the existing file as it was", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "keep.safetensors");
    await writeSafetensors(path, [{
      name: "old",
      dtype: "U8",
      shape: [1],
      data: Uint8Array.of(1),
    }]);
    const before = await Deno.readFile(path);
    function* tensors(): Generator<TensorToWrite> {
      yield { name: "new", dtype: "U8", shape: [1], data: Uint8Array.of(2) };
      throw new Error("the caller failed mid-way");
    }
    await assert.rejects(writeSafetensors(path, tensors()), /the caller failed mid-way/);
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["keep.safetensors"]);
  });
});

test("writeSafetensors() removes its temp file when the rename fails", async () => {
  await withTempDir(async (dir) => {
    // A non-empty directory where the file should go: everything succeeds but the rename.
    const path = join(dir, "occupied");
    await Deno.mkdir(path);
    await Deno.writeTextFile(join(path, "inside"), "x");
    await assert.rejects(
      writeSafetensors(path, [{ name: "a", dtype: "U8", shape: [4], data: new Uint8Array(4) }]),
    );
    assert.deepEqual(await listDir(dir), ["occupied"]);
    assert.deepEqual(await listDir(path), ["inside"]);
  });
});

const badWrites: [string, TensorToWrite[], Record<string, string> | undefined, RegExp][] = [
  [
    "a duplicate name",
    [
      { name: "w", dtype: "U8", shape: [1], data: new Uint8Array(1) },
      { name: "w", dtype: "U8", shape: [1], data: new Uint8Array(1) },
    ],
    undefined,
    /"w": the name is used twice/,
  ],
  [
    "the reserved name __metadata__",
    [{ name: "__metadata__", dtype: "U8", shape: [1], data: new Uint8Array(1) }],
    undefined,
    /"__metadata__": a tensor name must be/,
  ],
  [
    "a Float32Array given as I32",
    [{ name: "w", dtype: "I32", shape: [2], data: new Float32Array(2) }],
    undefined,
    /"w": data is a Float32Array, which does not hold I32 elements/,
  ],
  [
    "a negative dimension",
    [{ name: "w", dtype: "U8", shape: [-1], data: new Uint8Array(0) }],
    undefined,
    /"w": shape must be an array of integers >= 0/,
  ],
  [
    "a dtype it does not write",
    [{ name: "w", dtype: "F64" as "F32", shape: [1], data: new Uint8Array(8) }],
    undefined,
    /"w": cannot write dtype "F64"/,
  ],
  [
    "a metadata value that is not a string",
    [],
    { step: 5 as unknown as string },
    /metadata "step" is 5; values must be strings/,
  ],
];

for (const [what, tensors, metadata, pattern] of badWrites) {
  test(`writeSafetensors() rejects ${what}`, async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "bad.safetensors");
      const message = await checkpointError(() => writeSafetensors(path, tensors, metadata));
      assert.ok(message.includes(path), message);
      assert.match(message, pattern);
      assert.deepEqual(await listDir(dir), []);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Reader failures

const f32x2 = new Uint8Array(8);
const entry = (dtype: unknown, shape: unknown, offsets: unknown) =>
  JSON.stringify({ dtype, shape, data_offsets: offsets });

/** [what, file bytes, tensor the message must name (or undefined), what it must say] */
const badFiles: [string, Uint8Array, string | undefined, RegExp][] = [
  [
    "a file shorter than 8 bytes",
    Uint8Array.of(1, 2, 3, 4, 5),
    undefined,
    /5 bytes, fewer than the 8/,
  ],
  [
    "a header length beyond the file",
    fileBytes(`{"w":${entry("F32", [2], [0, 8])}}`, f32x2, 1000n),
    undefined,
    /header length field says 1000 bytes, beyond the end of the file/,
  ],
  [
    "a header length over 100 MB",
    fileBytes("{}", new Uint8Array(0), 2n ** 40n),
    undefined,
    /says 1099511627776 bytes, over the 100 MB limit/,
  ],
  [
    "a header that is not UTF-8",
    fileBytes(Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d), new Uint8Array(0)),
    undefined,
    /header is not valid UTF-8/,
  ],
  ["a header that is not JSON", fileBytes('{"w": ', f32x2), undefined, /header is not valid JSON/],
  [
    "a header that is not an object",
    fileBytes("[1, 2]", f32x2),
    undefined,
    /an array of 2, not a JSON object/,
  ],
  [
    "a header that is null",
    fileBytes("null", f32x2),
    undefined,
    /header is null, not a JSON object/,
  ],
  ["an entry that is not an object", fileBytes('{"w": 5}', f32x2), "w", /entry must be an object/],
  [
    "a missing dtype",
    fileBytes(`{"w":${JSON.stringify({ shape: [2], data_offsets: [0, 8] })}}`, f32x2),
    "w",
    /dtype: dtype must be a string/,
  ],
  [
    "a negative dimension",
    fileBytes(`{"w":${entry("F32", [-2], [0, 8])}}`, f32x2),
    "w",
    /shape.0: shape must hold sizes >= 0/,
  ],
  [
    "a fractional dimension",
    fileBytes(`{"w":${entry("F32", [1.5], [0, 8])}}`, f32x2),
    "w",
    /shape must hold integers/,
  ],
  [
    "a shape that is a string",
    fileBytes(`{"w":${entry("F32", "2", [0, 8])}}`, f32x2),
    "w",
    /shape must be an array/,
  ],
  [
    "three data offsets",
    fileBytes(`{"w":${entry("F32", [2], [0, 8, 8])}}`, f32x2),
    "w",
    /data_offsets must be \[begin, end\]/,
  ],
  [
    "a negative offset",
    fileBytes(`{"w":${entry("U8", [8], [-8, 0])}}`, f32x2),
    "w",
    /data_offsets must be >= 0/,
  ],
  [
    "a huge offset",
    fileBytes(`{"w":${entry("U8", [8], [0, 1e300])}}`, f32x2),
    "w",
    /data_offsets must hold integers/,
  ],
  [
    "a __metadata__ value that is not a string",
    fileBytes(`{"__metadata__":{"step":5},"w":${entry("F32", [2], [0, 8])}}`, f32x2),
    "__metadata__",
    /step: values must be strings/,
  ],
  [
    "an unknown dtype",
    fileBytes(`{"w":${entry("F128", [2], [0, 8])}}`, f32x2),
    "w",
    /unknown dtype "F128"/,
  ],
  [
    "a dtype named like a property of Object",
    fileBytes(`{"w":${entry("constructor", [2], [0, 8])}}`, f32x2),
    "w",
    /unknown dtype "constructor"/,
  ],
  [
    "offsets whose begin is after their end",
    fileBytes(`{"w":${entry("U8", [0], [8, 0])}}`, f32x2),
    "w",
    /data_offsets \[8, 0\] begin after they end/,
  ],
  [
    "an end beyond the data section",
    fileBytes(`{"w":${entry("F32", [4], [0, 16])}}`, f32x2),
    "w",
    /data_offsets \[0, 16\] end beyond the data section \(8 bytes\)/,
  ],
  [
    "a byte length other than product(shape) * dtype size",
    fileBytes(`{"w":${entry("F32", [3], [0, 8])}}`, f32x2),
    "w",
    /dtype F32 and shape \[3\] need 12 bytes, but data_offsets \[0, 8\] hold 8/,
  ],
  [
    "a shape whose element count overflows",
    fileBytes(`{"w":${entry("F32", [2 ** 40, 2 ** 40], [0, 8])}}`, f32x2),
    "w",
    /need more bytes than any file holds/,
  ],
  [
    "overlapping tensors",
    fileBytes(
      `{"a":${entry("F32", [2], [0, 8])},"b":${entry("F32", [2], [4, 12])}}`,
      new Uint8Array(12),
    ),
    "a",
    /"a" \[0, 8\] and "b" \[4, 12\] overlap/,
  ],
];

for (const [what, bytes, tensor, pattern] of badFiles) {
  test(`openSafetensors() rejects ${what}`, async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "bad-input.safetensors");
      await Deno.writeFile(path, bytes);
      const message = await checkpointError(() => openSafetensors(path));
      assert.ok(message.includes(path), `the message names the file: ${message}`);
      if (tensor !== undefined) {
        assert.ok(message.includes(`"${tensor}"`) || message.includes(`${tensor}:`), message);
      }
      assert.match(message, pattern);
    });
  });
}

test("openSafetensors() accepts holes between tensors and trailing bytes", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "holes.safetensors");
    const data = Uint8Array.from({ length: 20 }, (_, i) => i);
    const header = `{"a":${entry("U8", [2], [2, 4])},"b":${entry("I16", [2], [10, 14])}}`;
    await Deno.writeFile(path, fileBytes(header, data));
    const st = await openSafetensors(path);
    try {
      assert.deepEqual(await st.read("a"), Uint8Array.of(2, 3));
      assert.deepEqual(await st.read("b"), Uint8Array.of(10, 11, 12, 13));
    } finally {
      st.close();
    }
  });
});

test("openSafetensors() rejects a missing file, naming it", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "absent.safetensors");
    const message = await checkpointError(() => openSafetensors(path));
    assert.equal(message, `${path}: file not found`);
  });
});

test("openSafetensors() rejects a URL scheme it cannot read", async () => {
  const message = await checkpointError(() =>
    openSafetensors(new URL("ftp://example.com/model.safetensors"))
  );
  assert.match(message, /ftp:\/\/example\.com\/model\.safetensors: unsupported URL scheme ftp:/);
});

test("read() rejects an unknown tensor and a closed file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "read.safetensors");
    await writeSafetensors(path, [{ name: "a", dtype: "U8", shape: [1], data: Uint8Array.of(1) }]);
    const st = await openSafetensors(path);
    const unknown = await checkpointError(() => st.read("model.norm.weight"));
    assert.ok(unknown.includes(path), unknown);
    assert.match(unknown, /no tensor named "model\.norm\.weight"/);
    st.close();
    st.close();
    assert.match(await checkpointError(() => st.read("a")), /read\("a"\) after close\(\)/);
  });
});

test("read() rejects when the file was truncated after opening", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "shrunk.safetensors");
    await writeSafetensors(path, [{
      name: "a",
      dtype: "U8",
      shape: [64],
      data: new Uint8Array(64),
    }]);
    const st = await openSafetensors(path);
    try {
      await Deno.truncate(path, 40);
      const message = await checkpointError(() => st.read("a"));
      assert.match(message, /truncated or replaced while open/);
    } finally {
      st.close();
    }
  });
});

test("openSafetensors() and read() honour an AbortSignal", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "abort.safetensors");
    await writeSafetensors(path, [{ name: "a", dtype: "U8", shape: [1], data: Uint8Array.of(1) }]);
    await assert.rejects(openSafetensors(path, { signal: AbortSignal.abort() }), {
      name: "AbortError",
    });
    const controller = new AbortController();
    const st = await openSafetensors(path, { signal: controller.signal });
    try {
      assert.deepEqual(await st.read("a"), Uint8Array.of(1));
      controller.abort();
      await assert.rejects(st.read("a"), { name: "AbortError" });
    } finally {
      st.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Checkpoint folders

const SHARD1 = "model-00001-of-00002.safetensors";
const SHARD2 = "model-00002-of-00002.safetensors";

/** Two shards and their index; returns the tensors by name. */
async function writeSharded(
  dir: string,
  weightMap?: Record<string, string>,
): Promise<Map<string, TensorToWrite>> {
  const a: TensorToWrite = {
    name: "a",
    dtype: "F32",
    shape: [2, 2],
    data: Float32Array.of(1, 2, 3, 4),
  };
  const b: TensorToWrite = { name: "b", dtype: "BF16", shape: [3], data: Uint16Array.of(1, 2, 3) };
  const c: TensorToWrite = { name: "c", dtype: "I32", shape: [], data: Int32Array.of(-9) };
  await writeSafetensors(join(dir, SHARD1), [a, b], { format: "pt" });
  await writeSafetensors(join(dir, SHARD2), [c], { format: "pt" });
  await Deno.writeTextFile(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({
      metadata: { total_size: 26 },
      weight_map: weightMap ?? { c: SHARD2, a: SHARD1, b: SHARD1 },
    }),
  );
  return new Map([a, b, c].map((t) => [t.name, t]));
}

test("openCheckpoint() merges the shards named by model.safetensors.index.json", async () => {
  await withTempDir(async (dir) => {
    const written = await writeSharded(dir);
    const ckpt = await openCheckpoint(dir);
    try {
      assert.equal(ckpt.path, dir);
      assert.deepEqual(ckpt.files, [join(dir, SHARD2), join(dir, SHARD1)]);
      assert.deepEqual(ckpt.indexMetadata, { total_size: 26 });
      assert.deepEqual(ckpt.metadata, { format: "pt" });
      assert.deepEqual([...ckpt.tensors.keys()], ["c", "a", "b"]);
      assert.equal(ckpt.tensors.get("a")!.file, join(dir, SHARD1));
      assert.equal(ckpt.tensors.get("c")!.file, join(dir, SHARD2));
      for (const [name, t] of written) assert.deepEqual(await ckpt.read(name), bytesOf(t.data));
      assert.match(await checkpointError(() => ckpt.read("d")), /no tensor named "d"/);
    } finally {
      ckpt.close();
    }
  });
});

test("openCheckpoint() leaves out shard tensors that the index does not name", async () => {
  await withTempDir(async (dir) => {
    await writeSharded(dir, { a: SHARD1, c: SHARD2 });
    const ckpt = await openCheckpoint(pathToFileURL(dir));
    try {
      assert.deepEqual([...ckpt.tensors.keys()], ["a", "c"]);
    } finally {
      ckpt.close();
    }
  });
});

test("openCheckpoint() opens a folder with one model.safetensors", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "model.safetensors");
    await writeSafetensors(path, [{
      name: "w",
      dtype: "F16",
      shape: [1],
      data: Uint16Array.of(0x3c00),
    }]);
    const ckpt = await openCheckpoint(dir);
    try {
      assert.equal(ckpt.path, dir);
      assert.deepEqual(ckpt.files, [path]);
      assert.equal(ckpt.indexMetadata, undefined);
      assert.deepEqual(decodeToF32(await ckpt.read("w"), "F16"), Float32Array.of(1));
    } finally {
      ckpt.close();
    }
  });
});

test("openCheckpoint() rejects a missing shard, naming index, shard and tensor", async () => {
  await withTempDir(async (dir) => {
    await writeSharded(dir);
    await Deno.remove(join(dir, SHARD1));
    const message = await checkpointError(() => openCheckpoint(dir));
    assert.ok(message.includes(join(dir, "model.safetensors.index.json")), message);
    assert.ok(message.includes(join(dir, SHARD1)), message);
    assert.match(message, /maps tensor "a" to .* which does not exist/);
  });
});

test("openCheckpoint() rejects an index naming a tensor its shard lacks", async () => {
  await withTempDir(async (dir) => {
    await writeSharded(dir, { a: SHARD1, b: SHARD1, c: SHARD2, "lm_head.weight": SHARD2 });
    const message = await checkpointError(() => openCheckpoint(dir));
    assert.ok(message.includes(join(dir, "model.safetensors.index.json")), message);
    assert.ok(message.includes(join(dir, SHARD2)), message);
    assert.match(message, /"lm_head\.weight".*has no such tensor/);
  });
});

test("openCheckpoint() rejects a folder with neither layout, saying what it expected", async () => {
  await withTempDir(async (dir) => {
    await writeSafetensors(join(dir, "weights.safetensors"), []);
    const message = await checkpointError(() => openCheckpoint(dir));
    assert.ok(message.startsWith(`${dir}: no checkpoint found`), message);
    assert.match(message, /expected model\.safetensors, or model\.safetensors\.index\.json/);
    assert.match(message, /found weights\.safetensors but no index/);
    const missing = await checkpointError(() => openCheckpoint(join(dir, "nope")));
    assert.match(missing, /the folder does not exist/);
  });
});

const badIndexes: [string, string, RegExp][] = [
  ["an index that is not JSON", "{", /not valid JSON/],
  ["an index without weight_map", '{"metadata": {}}', /weight_map: weight_map must be an object/],
  [
    "a weight_map with a number for a shard",
    '{"weight_map": {"a": 5}}',
    /weight_map\.a: shard file names must be strings/,
  ],
  [
    "a shard outside the folder",
    '{"weight_map": {"a": "../model.safetensors"}}',
    /"a" is mapped to "\.\.\/model\.safetensors", which is not a file name inside/,
  ],
];

for (const [what, text, pattern] of badIndexes) {
  test(`openCheckpoint() rejects ${what}`, async () => {
    await withTempDir(async (dir) => {
      await writeSharded(dir);
      const indexPath = join(dir, "model.safetensors.index.json");
      await Deno.writeTextFile(indexPath, text);
      const message = await checkpointError(() => openCheckpoint(dir));
      assert.ok(message.includes(indexPath), message);
      assert.match(message, pattern);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP

/** Serves `files` on 127.0.0.1 with Range support (unless `ignoreRange`); logs each request. */
function serve(files: Map<string, Uint8Array>, ignoreRange = false) {
  const log: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const name = decodeURIComponent(new URL(request.url).pathname.slice(1));
    const range = request.headers.get("range");
    log.push(`${name} ${range ?? "whole"}`);
    const body = files.get(name);
    if (body === undefined) return new Response("not found", { status: 404 });
    const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? "");
    if (ignoreRange || m === null) return new Response(body.slice());
    const start = Number(m[1]);
    const end = Math.min(m[2] === "" ? body.length - 1 : Number(m[2]), body.length - 1);
    if (start >= body.length) {
      return new Response(null, {
        status: 416,
        headers: { "content-range": `bytes */${body.length}` },
      });
    }
    return new Response(body.slice(start, end + 1), {
      status: 206,
      headers: { "content-range": `bytes ${start}-${end}/${body.length}` },
    });
  });
  return { base: `http://127.0.0.1:${server.addr.port}/`, log, server };
}

test("openSafetensors() reads tensors over HTTP with range requests", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "remote.safetensors");
    const tensors = sampleTensors();
    await writeSafetensors(path, tensors, { format: "pt" });
    const { base, log, server } = serve(
      new Map([["dir/remote.safetensors", await Deno.readFile(path)]]),
    );
    try {
      const url = `${base}dir/remote.safetensors`;
      const st = await openSafetensors(url);
      try {
        assert.equal(st.path, url);
        assert.equal(st.tensors.get("i32")!.file, url);
        assert.deepEqual(st.metadata, { format: "pt" });
        assert.deepEqual(log, ["dir/remote.safetensors bytes=0-262143"]);
        for (const t of tensors) assert.deepEqual(await st.read(t.name), bytesOf(t.data), t.name);
        assert.equal(log.length, 1, "a small file is served from the first request");
      } finally {
        st.close();
      }
    } finally {
      await server.shutdown();
    }
  });
});

test("openSafetensors() fetches a header longer than its first HTTP request", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "big-header.safetensors");
    const big = "x".repeat(300_000);
    const tensors: TensorToWrite[] = [
      { name: "a", dtype: "F32", shape: [3], data: Float32Array.of(1, 2, 3) },
      { name: "b", dtype: "U8", shape: [0], data: new Uint8Array(0) },
      { name: "c", dtype: "F16", shape: [2], data: Uint16Array.of(0x3c00, 0xc000) },
    ];
    await writeSafetensors(path, tensors, { big });
    const { base, log, server } = serve(new Map([["big.safetensors", await Deno.readFile(path)]]));
    try {
      const st = await openSafetensors(new URL(`${base}big.safetensors`));
      try {
        assert.equal(st.metadata.big, big);
        assert.equal(log.length, 2, log.join("\n"));
        for (const t of tensors) assert.deepEqual(await st.read(t.name), bytesOf(t.data), t.name);
        const a = st.tensors.get("a")!;
        assert.ok(
          log.includes(`big.safetensors bytes=${a.byteOffset}-${a.byteOffset + 11}`),
          log.join("\n"),
        );
        assert.equal(log.length, 4, "an empty tensor needs no request");
      } finally {
        st.close();
      }
    } finally {
      await server.shutdown();
    }
  });
});

test("openCheckpoint() reads a sharded checkpoint over HTTP", async () => {
  await withTempDir(async (dir) => {
    const written = await writeSharded(dir);
    const files = new Map<string, Uint8Array>();
    for (const name of await listDir(dir)) {
      files.set(`repo/${name}`, await Deno.readFile(join(dir, name)));
    }
    const { base, server } = serve(files);
    try {
      const ckpt = await openCheckpoint(`${base}repo`);
      try {
        assert.deepEqual(ckpt.files, [`${base}repo/${SHARD2}`, `${base}repo/${SHARD1}`]);
        for (const [name, t] of written) assert.deepEqual(await ckpt.read(name), bytesOf(t.data));
      } finally {
        ckpt.close();
      }
      files.delete(`repo/${SHARD2}`);
      const message = await checkpointError(() => openCheckpoint(`${base}repo/`));
      assert.match(
        message,
        new RegExp(`maps tensor "c" to ${base}repo/${SHARD2}, which does not exist`),
      );
    } finally {
      await server.shutdown();
    }
  });
});

test("openSafetensors() refuses a server that ignores Range, and reports HTTP errors", async () => {
  const bytes = fileBytes(`{"w":${entry("U8", [1], [0, 1])}}`, Uint8Array.of(1));
  const { base, server } = serve(new Map([["m.safetensors", bytes]]), true);
  try {
    const ignored = await checkpointError(() => openSafetensors(`${base}m.safetensors`));
    assert.ok(
      ignored.startsWith(`${base}m.safetensors: the server ignored the Range header`),
      ignored,
    );
    assert.match(ignored, /download the file and open it from disk/);
    const missing = await checkpointError(() => openSafetensors(`${base}none.safetensors`));
    assert.equal(missing, `${base}none.safetensors: file not found`);
  } finally {
    await server.shutdown();
  }
});

test("openSafetensors() rejects a truncated file served over HTTP like one on disk", async () => {
  const { base, server } = serve(
    new Map([["short.safetensors", Uint8Array.of(1, 2, 3)], [
      "empty.safetensors",
      new Uint8Array(0),
    ]]),
  );
  try {
    for (const name of ["short.safetensors", "empty.safetensors"]) {
      const message = await checkpointError(() => openSafetensors(`${base}${name}`));
      assert.ok(message.startsWith(`${base}${name}: the file has`), message);
      assert.match(message, /fewer than the 8/);
    }
  } finally {
    await server.shutdown();
  }
});

// ---------------------------------------------------------------------------------------------
// Conversions

function assertSameFloats(actual: Float32Array, expected: number[]): void {
  assert.equal(actual.length, expected.length);
  expected.forEach((want, i) => {
    assert.ok(
      Object.is(actual[i], Math.fround(want)),
      `element ${i}: got ${actual[i]}, want ${want}`,
    );
  });
}

test("decodeToF32() decodes BF16 bit patterns", () => {
  const bits = [0x3f80, 0xc000, 0x477f, 0x0001, 0x007f, 0x7f80, 0xff80, 0x7fc0, 0x8000];
  const want = [1, -2, 65280, 2 ** -133, 127 * 2 ** -133, Infinity, -Infinity, NaN, -0];
  assertSameFloats(decodeToF32(bits16(bits), "BF16"), want);
});

test("decodeToF32() decodes F16 bit patterns", () => {
  const bits = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x7e00, 0x8000];
  const want = [1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, Infinity, -Infinity, NaN, -0];
  assertSameFloats(decodeToF32(bits16(bits), "F16"), want);
});

test("decodeToF32() views aligned F32 bytes and copies unaligned ones", () => {
  const values = Float32Array.of(1, -2, 65504, 1e-45, Infinity);
  const aligned = bytesOf(values);
  const view = decodeToF32(aligned, "F32");
  assert.equal(view.buffer, aligned.buffer);
  assert.deepEqual(view, values);
  const shifted = new Uint8Array(aligned.length + 3);
  shifted.set(aligned, 3);
  assert.deepEqual(decodeToF32(shifted.subarray(3), "F32"), values);
  const odd = new Uint8Array(7);
  odd.set(bits16([0x3c00, 0xc000, 0x7bff]), 1);
  assertSameFloats(decodeToF32(odd.subarray(1), "F16"), [1, -2, 65504]);
  assert.deepEqual(decodeToF16Bits(odd.subarray(1), "F16"), Uint16Array.of(0x3c00, 0xc000, 0x7bff));
});

test("decodeToF16Bits() rounds F32 to the nearest f16, ties to even", () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [65519, 0x7bff], // just below the halfway point to 65536
    [65520, 0x7c00], // halfway: ties to even, which is the overflow to infinity
    [1e6, 0x7c00],
    [1 + 2 ** -11, 0x3c00], // halfway between 0x3c00 and 0x3c01: to the even 0x3c00
    [1 + 3 * 2 ** -11, 0x3c02], // halfway between 0x3c01 and 0x3c02: to the even 0x3c02
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above halfway: up
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // halfway between 0 and the smallest subnormal: to 0
    [3 * 2 ** -25, 0x0002], // halfway between subnormals 1 and 2: to 2
    [-0, 0x8000],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
  ];
  const input = Float32Array.from(cases.map(([v]) => v));
  assert.deepEqual(input, Float32Array.from(cases.map(([v]) => v)));
  cases.forEach(([v]) => assert.equal(Math.fround(v), v, `${v} must be exact in f32`));
  const bits = decodeToF16Bits(bytesOf(input), "F32");
  cases.forEach(([v, want], i) => {
    assert.equal(bits[i], want, `${v}: got 0x${bits[i].toString(16)}, want 0x${want.toString(16)}`);
  });
  const nan = decodeToF16Bits(bytesOf(Float32Array.of(NaN)), "F32")[0];
  assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x03ff) !== 0, `NaN became 0x${nan.toString(16)}`);
});

test("decodeToF16Bits() converts BF16 through f32 with one rounding", () => {
  const bits = decodeToF16Bits(
    bits16([0x3f80, 0xc000, 0x477f, 0x4780, 0x0001, 0x3f81, 0x7fc0]),
    "BF16",
  );
  assert.deepEqual([...bits.subarray(0, 6)], [0x3c00, 0xc000, 0x7bf8, 0x7c00, 0x0000, 0x3c08]);
  assert.ok((bits[6] & 0x7c00) === 0x7c00 && (bits[6] & 0x03ff) !== 0, "NaN stays NaN");
});

test("decodeToF32() and decodeToF16Bits() reject dtypes that are not weights", () => {
  for (const dtype of ["I32", "U8", "F64", "F8_E4M3", "BOOL"] as Dtype[]) {
    for (const decode of [decodeToF32, decodeToF16Bits]) {
      assert.throws(() => decode(new Uint8Array(8), dtype), (e: unknown) => {
        assert.ok(e instanceof CheckpointError);
        assert.match(e.message, new RegExp(`dtype "${dtype}" is not supported for weights`));
        return true;
      });
    }
  }
});

test("decodeToF32() rejects a byte length that is not a whole number of elements", () => {
  assert.throws(() => decodeToF32(new Uint8Array(6), "F32"), {
    name: "CheckpointError",
    message: /F32 data must be a whole number of 4-byte elements, got 6 bytes/,
  });
  assert.throws(() => decodeToF16Bits(new Uint8Array(3), "BF16"), {
    name: "CheckpointError",
    message: /BF16 data must be a whole number of 2-byte elements, got 3 bytes/,
  });
});

test("dtypeSize() gives the element size of every dtype", () => {
  const sizes: Record<Dtype, number> = {
    F64: 8,
    F32: 4,
    F16: 2,
    BF16: 2,
    F8_E4M3: 1,
    F8_E5M2: 1,
    I64: 8,
    I32: 4,
    I16: 2,
    I8: 1,
    U64: 8,
    U32: 4,
    U16: 2,
    U8: 1,
    BOOL: 1,
  };
  for (const [dtype, size] of Object.entries(sizes)) {
    assert.equal(dtypeSize(dtype as Dtype), size, dtype);
  }
  assert.throws(() => dtypeSize("F128" as Dtype), {
    name: "CheckpointError",
    message: /unknown dtype "F128"/,
  });
  assert.throws(() => dtypeSize("toString" as Dtype), { name: "CheckpointError" });
});
