// The default model that ships in models/ahead-code/ loads and writes text, and the README's
// example command runs with no flags.
import assert from "node:assert/strict";
import { complete, loadModel } from "../mod.ts";

Deno.test("the default model loads from a URL beside the code and speculative output equals greedy", async () => {
  const model = await loadModel(new URL("../models/ahead-code/", import.meta.url));
  try {
    assert.equal(model.config.nFuture, 4);
    assert.equal(model.tokenizer?.source, "byteTokenizer()");
    assert.deepEqual(model.eosIds, [0]);
    const prompt = "export function add(a, b) {\n";
    const g = await complete(model, prompt, { maxTokens: 40 });
    const s = await complete(model, prompt, { maxTokens: 40, mode: "speculative" });
    assert.deepEqual(s.tokens, g.tokens);
    assert.equal(s.text, g.text);
    assert.ok(g.text!.length > 0);
    // Trained heads: more than one byte per forward pass (random heads give about 1).
    assert.ok(s.stats.tokensPerStep > 1.5, `${s.stats.tokensPerStep} bytes per step`);
  } finally {
    model.dispose();
  }
});

Deno.test("examples/generate.ts with no flags prints text and a line of stats", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", "examples/generate.ts", "--max-tokens", "24"],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  assert.match(text, /Model: ahead-code \(the default\)/);
  assert.match(text, /24 tokens in \d+ steps: [\d.]+ tokens\/step, [\d.]+ tokens\/s/);
});
