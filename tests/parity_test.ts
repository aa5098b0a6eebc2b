// Parity with PyTorch, re-checked in CI: checkpoints written by transformers' save_pretrained
// (tools/pytorch_parity.py on the GPU machine) and transformers' logits for them, as fixtures.
import assert from "node:assert/strict";
import { forward, loadModel } from "../mod.ts";
import { relativeError } from "../kernels/reference.ts";

const root = new URL("./fixtures/parity/", import.meta.url);
const cases: string[] = [];
for await (const e of Deno.readDir(root)) if (e.isDirectory) cases.push(e.name);

Deno.test("the parity fixtures exist (tools/pytorch_parity.py --fixtures tests/fixtures/parity)", () => {
  assert.ok(cases.length >= 2, `found ${cases.length} parity fixtures`);
});

for (const name of cases.sort()) {
  Deno.test(`a transformers checkpoint (${name}) gives transformers' logits at every position`, async () => {
    const dir = new URL(`${name}/`, root);
    const want = JSON.parse(await Deno.readTextFile(new URL("expected.json", dir))) as {
      prompts: number[][];
      bound: number;
      vocab: number;
      logits: string[];
    };
    const model = await loadModel(dir, { onWarning: () => {} });
    try {
      for (let i = 0; i < want.prompts.length; i++) {
        const [head1] = await forward(model, want.prompts[i]);
        const bytes = Uint8Array.from(atob(want.logits[i]), (c) => c.charCodeAt(0));
        const expected = new Float32Array(bytes.buffer);
        assert.equal(head1.length, expected.length);
        const err = relativeError(head1, expected);
        assert.ok(err < want.bound, `prompt ${i}: relative error ${err} >= ${want.bound}`);
      }
    } finally {
      model.dispose();
    }
  });
}
