// Seeded fuzzing of the safetensors reader: every mutated file must either load or be refused with
// a CheckpointError. The mutation generator comes first and knows nothing of the reader, so a
// later test can run the same cases through another load function (e.g. loadModel).
import assert from "node:assert/strict";
import { join } from "node:path";
import { CheckpointError } from "../gpu/errors.ts";
import { joinFile, mutate, splitFile } from "./mutate.ts";
import {
  decodeToF16Bits,
  decodeToF32,
  openCheckpoint,
  openSafetensors,
  writeSafetensors,
} from "../io/safetensors.ts";

// ---------------------------------------------------------------------------------------------
// Harness

/** Opens a file and reads (and decodes) every tensor, as a model load would. */
async function loadEveryTensor(path: string): Promise<void> {
  const size = (await Deno.stat(path)).size;
  const st = await openSafetensors(path);
  try {
    for (const info of st.tensors.values()) {
      assert.ok(info.byteOffset >= 8 && info.byteOffset + info.byteLength <= size, info.name);
      const bytes = await st.read(info.name);
      assert.equal(bytes.length, info.byteLength, info.name);
      if (info.dtype === "F32" || info.dtype === "F16" || info.dtype === "BF16") {
        assert.equal(
          decodeToF32(bytes, info.dtype).length,
          decodeToF16Bits(bytes, info.dtype).length,
        );
      }
    }
  } finally {
    st.close();
  }
}

/**
 * Writes `cases` seeded mutations of `base` to `path` in turn and runs `load` on each; returns
 * [loaded, refused].
 */
async function fuzz(
  base: Uint8Array,
  { cases, path, load }: { cases: number; path: string; load: (path: string) => Promise<void> },
): Promise<[number, number]> {
  let loaded = 0;
  let refused = 0;
  const failures: string[] = [];
  for (let seed = 0; seed < cases; seed++) {
    const { bytes, what } = mutate(base, seed);
    await Deno.writeFile(path, bytes);
    try {
      await load(path);
      loaded++;
    } catch (e) {
      if (e instanceof CheckpointError) refused++;
      else {failures.push(
          `seed ${seed} (${what}): ${e instanceof Error ? `${e.name}: ${e.message}` : e}`,
        );}
    }
  }
  assert.deepEqual(
    failures,
    [],
    `${failures.length} case(s) threw something else than a CheckpointError`,
  );
  return [loaded, refused];
}

async function baseCheckpoint(path: string): Promise<Uint8Array> {
  await writeSafetensors(path, [
    {
      name: "embed",
      dtype: "F32",
      shape: [4, 6],
      data: Float32Array.from({ length: 24 }, (_, i) => i / 7),
    },
    {
      name: "norm",
      dtype: "F16",
      shape: [7],
      data: Uint16Array.of(0x3c00, 0xc000, 1, 0x7bff, 0, 0x8000, 0x3555),
    },
    {
      name: "bf",
      dtype: "BF16",
      shape: [2, 1, 3],
      data: Uint16Array.of(0x3f80, 1, 2, 3, 0x7f80, 0xc000),
    },
    { name: "step", dtype: "I32", shape: [], data: Int32Array.of(12) },
    { name: "empty", dtype: "U8", shape: [3, 0], data: new Uint8Array(0) },
    { name: "mask", dtype: "U8", shape: [5], data: Uint8Array.of(1, 0, 1, 1, 0) },
  ], { format: "pt", origin: "fuzz" });
  const bytes = await Deno.readFile(path);
  assert.ok(bytes.length < 4096);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Tests

/**
 * Deno.test with the resource and op sanitizers on (Deno 2.9 leaves them off by default): a file
 * handle left open on an error path fails the test.
 */
function test(name: string, fn: () => void | Promise<void>): void {
  Deno.test({ name, fn, sanitizeResources: true, sanitizeOps: true });
}

test("openSafetensors() loads or refuses with a CheckpointError 3000 mutated files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "safetensors_fuzz_" });
  try {
    const path = join(dir, "case.safetensors");
    const base = await baseCheckpoint(path);
    await loadEveryTensor(path);
    const [loaded, refused] = await fuzz(base, { cases: 3000, path, load: loadEveryTensor });
    assert.equal(loaded + refused, 3000);
    // Both outcomes must be common, or the mutations are too weak (or too destructive) to test.
    assert.ok(loaded > 300, `only ${loaded} mutated files loaded`);
    assert.ok(refused > 1000, `only ${refused} mutated files were refused`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("mutate() is deterministic in its seed and changes the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "safetensors_fuzz_" });
  try {
    const base = await baseCheckpoint(join(dir, "base.safetensors"));
    let changed = 0;
    for (let seed = 0; seed < 200; seed++) {
      const a = mutate(base, seed);
      assert.deepEqual(a, mutate(base, seed), `seed ${seed}`);
      if (a.bytes.length !== base.length || a.bytes.some((b, i) => b !== base[i])) changed++;
    }
    assert.ok(changed > 180, `only ${changed} of 200 mutations changed the file`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("openCheckpoint() loads or refuses with a CheckpointError 500 mutated indexes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "safetensors_fuzz_" });
  try {
    const one = "model-00001-of-00002.safetensors";
    const two = "model-00002-of-00002.safetensors";
    await writeSafetensors(join(dir, one), [
      { name: "a", dtype: "F32", shape: [2], data: Float32Array.of(1, 2) },
      { name: "b", dtype: "U8", shape: [1], data: Uint8Array.of(3) },
    ]);
    await writeSafetensors(join(dir, two), [{
      name: "c",
      dtype: "I32",
      shape: [],
      data: Int32Array.of(4),
    }]);
    const index = JSON.stringify({
      metadata: { total_size: 13 },
      weight_map: { a: one, b: one, c: two },
    });
    // The index goes through the same generator as a header: wrapping it as a file's header lets
    // the JSON edits, duplicated keys, byte flips and truncations all reach it.
    const base = joinFile(index, new Uint8Array(0));
    const loadIndex = async (path: string) => {
      const split = splitFile(await Deno.readFile(path));
      await Deno.writeTextFile(join(dir, "model.safetensors.index.json"), split?.header ?? "");
      const ckpt = await openCheckpoint(dir);
      try {
        for (const name of ckpt.tensors.keys()) await ckpt.read(name);
      } finally {
        ckpt.close();
      }
    };
    const [loaded, refused] = await fuzz(base, {
      cases: 500,
      path: join(dir, "case.bin"),
      load: loadIndex,
    });
    assert.ok(loaded > 20, `only ${loaded} mutated indexes loaded`);
    assert.ok(refused > 100, `only ${refused} mutated indexes were refused`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
