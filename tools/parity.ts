/**
 * ahead's side of the PyTorch parity check (tools/pytorch_parity.py runs it): loads a model
 * folder and writes, for each prompt, the logits of every head at every position (forward) and
 * the head-1 logits of `--decode` greedy decode steps after the prompt (prefill, then one step
 * at a time through the decode session), as JSON with base64 f32 arrays.
 *
 *     deno run -A --unstable-webgpu tools/parity.ts --model DIR [--heads DIR]
 *       --prompts PROMPTS.json --decode 8 --out OUT.json [--dtype f32|f16|q8|q4]
 * @module
 */
import { parseArgs } from "node:util";
import { forward, loadModel } from "../mod.ts";
import { Session } from "../internals.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    heads: { type: "string" },
    prompts: { type: "string" },
    decode: { type: "string", default: "8" },
    out: { type: "string" },
    dtype: { type: "string" },
  },
});
if (!values.model || !values.prompts || !values.out) {
  console.error(
    "usage: tools/parity.ts --model DIR [--heads DIR] --prompts FILE --decode N --out FILE",
  );
  Deno.exit(2);
}
const prompts = JSON.parse(await Deno.readTextFile(values.prompts)) as number[][];
const steps = Number(values.decode);
const model = await loadModel(values.model, {
  heads: values.heads,
  dtype: values.dtype as "f32" | "f16" | "q8" | "q4" | undefined,
  onWarning: (m) => console.error(m),
});
function b64(a: Float32Array): string {
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}
const cases = [];
try {
  const v = model.config.vocabSize;
  for (const prompt of prompts) {
    const heads = await forward(model, prompt);
    // Decode steps through the real decode path: prefill, then one step (one row) at a time.
    const session = new Session(model, { k: 1, drafts: null, promptLength: prompt.length });
    const stepLogits: Float32Array[] = [];
    let tokens: number[] = [];
    try {
      session.start(prompt, { limit: prompt.length + steps, stop: [] });
      const slot = session.readback();
      for (let i = 0; i < steps; i++) {
        model.gpu.device.queue.submit([session.encodeSteps(1, slot)]);
        stepLogits.push(new Float32Array(await model.gpu.read(session.logits.buffer), 0, v));
      }
      await slot.buffer.mapAsync(GPUMapMode.READ);
      const snap = session.snapshot(slot);
      tokens = Array.from(snap.tokens.subarray(prompt.length, prompt.length + steps));
    } finally {
      session.dispose();
    }
    const all = new Float32Array(steps * v);
    stepLogits.forEach((l, i) => all.set(l, i * v));
    cases.push({ prompt, forward: heads.map(b64), decodeTokens: tokens, decodeLogits: b64(all) });
  }
  await Deno.writeTextFile(
    values.out,
    JSON.stringify({ vocab: v, nFuture: model.config.nFuture, config: model.config, cases }),
  );
} finally {
  model.dispose();
}
