/**
 * Fails when an import points up the layers. Lowest first:
 *
 *     gpu < kernels < model < heads < io < train | decode < serve | web < mod.ts, internals.ts
 *       < examples | bench
 *
 * A module may import its own folder and any lower layer; folders on one rank (train and
 * decode, serve and web, examples and bench) may not import each other. tests/ and tools/ may
 * import anything. Reads the module graph from `deno info --json`.
 *
 *     deno run -A tools/check_imports.ts
 * @module
 */
import { relative } from "node:path";

const RANKS: Record<string, number> = {
  gpu: 0,
  kernels: 1,
  model: 2,
  heads: 3,
  io: 4,
  train: 5,
  decode: 5,
  serve: 6,
  web: 6,
  "mod.ts": 7,
  "internals.ts": 7,
  examples: 8,
  bench: 8,
};
const FREE = new Set(["tests", "tools", ".ci"]);

const root = new URL("..", import.meta.url);
const rootPath = root.pathname;

function layer(file: string): string {
  const rel = relative(rootPath, file);
  return rel.includes("/") ? rel.split("/")[0] : rel;
}

/** The .ts files git tracks or would track (ignored folders such as data/ and .gpu/ left out). */
async function sources(): Promise<string[]> {
  const out = await new Deno.Command("git", {
    args: ["ls-files", "--cached", "--others", "--exclude-standard", "*.ts"],
    cwd: rootPath,
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((f) => f)
    .map((f) => `${rootPath}${f}`)
    .filter((f) => {
      try {
        return Deno.statSync(f).isFile;
      } catch {
        return false; // deleted in the work tree
      }
    });
}

const files = (await sources()).filter((f) => !FREE.has(layer(f)));
const unknown = files.filter((f) => !(layer(f) in RANKS));
if (unknown.length > 0) {
  console.error(`files outside the known layers (add the folder to tools/check_imports.ts):`);
  for (const f of unknown) console.error(`  ${relative(rootPath, f)}`);
  Deno.exit(1);
}

const entry = await Deno.makeTempFile({ suffix: ".ts" });
try {
  await Deno.writeTextFile(entry, files.map((f) => `import "file://${f}";`).join("\n"));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    console.error(new TextDecoder().decode(out.stderr));
    Deno.exit(1);
  }
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: {
      specifier: string;
      dependencies?: { specifier: string; code?: { specifier: string } }[];
    }[];
  };
  const bad: string[] = [];
  for (const m of graph.modules) {
    if (!m.specifier.startsWith(root.href)) continue;
    const from = new URL(m.specifier).pathname;
    const lf = layer(from);
    if (FREE.has(lf) || !(lf in RANKS)) continue;
    for (const d of m.dependencies ?? []) {
      const target = d.code?.specifier;
      if (!target?.startsWith(root.href)) continue;
      const lt = layer(new URL(target).pathname);
      if (lt === lf) continue;
      if (FREE.has(lt) || !(lt in RANKS) || RANKS[lt] >= RANKS[lf]) {
        bad.push(
          `${relative(rootPath, from)} imports ${relative(rootPath, new URL(target).pathname)}`,
        );
      }
    }
  }
  if (bad.length > 0) {
    console.error(
      `imports that point up or sideways (see the layer order in tools/check_imports.ts):`,
    );
    for (const b of bad) console.error(`  ${b}`);
    Deno.exit(1);
  }
  console.log(`imports point down: ${files.length} modules checked`);
} finally {
  await Deno.remove(entry);
}
