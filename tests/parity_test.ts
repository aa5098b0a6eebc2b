// Parity with PyTorch, re-checked in CI: checkpoints written by transformers' save_pretrained
// (tools/pytorch_parity.py on the GPU machine) and transformers' logits for them, as fixtures.
import assert from "node:assert/strict";
import { forward, loadModel } from "../mod.ts";
import { relativeError } from "../kernels/reference.ts";

const root = new URL("./fixtures/parity/", import.meta.url);
const cases: string[] = [];
for await (const e of Deno.readDir(root)) if (e.isDirectory) cases.push(e.name);

Deno.test("the parity fixtures exist (tools/pytorch_parity.py --fixtures tests/fixtures/parity)", () => {
  assert.ok(cases.length >= 3, `found ${cases.length} parity fixtures`);
});

for (const name of cases.sort()) {
  Deno.test(`a transformers checkpoint (${name}) gives transformers' logits at every position`, async () => {
    const dir = new URL(`${name}/`, root);
    const want = JSON.parse(await Deno.readTextFile(new URL("expected.json", dir))) as {
      prompts: number[][];
      bound: number;
      vocab: number;
      logits: string[];
      /** Per prompt, heads 2.. (sequential MTP modules: n - k rows for module k), when present. */
      heads?: string[][];
    };
    const model = await loadModel(dir, { onWarning: () => {} });
    const decode = (b64: string) =>
      new Float32Array(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer);
    try {
      for (let i = 0; i < want.prompts.length; i++) {
        const heads = await forward(model, want.prompts[i]);
        const expected = [want.logits[i], ...(want.heads?.[i] ?? [])].map(decode);
        assert.equal(heads.length, expected.length, "heads");
        for (let h = 0; h < expected.length; h++) {
          assert.equal(heads[h].length, expected[h].length, `prompt ${i}, head ${h + 1}: rows`);
          if (expected[h].length === 0) continue;
          const err = relativeError(heads[h], expected[h]);
          assert.ok(err < want.bound, `prompt ${i}, head ${h + 1}: error ${err} >= ${want.bound}`);
        }
      }
    } finally {
      model.dispose();
    }
  });
}
