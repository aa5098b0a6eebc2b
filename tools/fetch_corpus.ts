/**
 * Builds the code corpus the default model trains on: JavaScript and TypeScript source from
 * permissively licensed npm packages, fetched from the npm registry (tarballs), with a manifest
 * of package names, versions and licenses for the model card. Some packages are kept out
 * entirely as held-out data.
 *
 *     deno run -A tools/fetch_corpus.ts --out data/corpus
 *
 * Writes OUT/train/*.js|ts, OUT/heldout/*.js|ts (one file per source file, flattened names) and
 * OUT/manifest.json. Minified or generated files (long lines), maps, declaration files and
 * duplicates are left out. A package whose license is not MIT, ISC, BSD or Apache-2.0 is refused.
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";

/** Packages to train on. Versions are pinned so the corpus can be rebuilt exactly. */
const TRAIN = [
  "lodash@4.17.21",
  "express@4.21.2",
  "commander@12.1.0",
  "yargs@17.7.2",
  "chalk@4.1.2",
  "debug@4.4.0",
  "uuid@9.0.1",
  "minimist@1.2.8",
  "axios@1.7.9",
  "date-fns@2.30.0",
  "moment@2.30.1",
  "underscore@1.13.7",
  "async@3.2.6",
  "bluebird@3.7.2",
  "ramda@0.30.1",
  "immutable@4.3.7",
  "redux@5.0.1",
  "mobx@6.13.5",
  "zod@3.24.1",
  "ajv@8.17.1",
  "acorn@8.14.0",
  "esprima@4.0.1",
  "markdown-it@14.1.0",
  "handlebars@4.7.8",
  "mustache@4.2.0",
  "ejs@3.1.10",
  "jquery@3.7.1",
  "ws@8.18.0",
  "node-fetch@2.7.0",
  "body-parser@1.20.3",
  "cors@2.8.5",
  "dotenv@16.4.7",
  "jsonwebtoken@9.0.2",
  "bcryptjs@2.4.3",
  "cheerio@1.0.0",
  "rollup@4.28.1",
  "postcss@8.4.49",
  "terser@5.37.0",
  "tslib@2.8.1",
  "rxjs@7.8.1",
  "three@0.171.0",
  "lit@3.2.1",
  "socket.io@4.8.1",
  "qs@6.13.1",
  "validator@13.12.0",
  "luxon@3.5.0",
  "d3-array@3.2.4",
  "d3-scale@4.0.2",
  "prismjs@1.29.0",
  "highlight.js@11.11.1",
  "js-yaml@4.1.0",
  "fs-extra@11.2.0",
  "glob@11.0.0",
  "minimatch@10.0.1",
  "eventemitter3@5.0.1",
  "nanoid@5.0.9",
  "classnames@2.5.1",
  "deepmerge@4.3.1",
  "p-limit@6.2.0",
  "superagent@10.1.1",
];

/** Packages kept out of training entirely, for held-out measurements. */
const HELDOUT = [
  "koa@2.15.3",
  "fastify@5.2.0",
  "preact@10.25.4",
  "marked@15.0.4",
  "semver@7.6.3",
  "yup@1.6.1",
];

const LICENSES = /^(MIT|ISC|BSD-2-Clause|BSD-3-Clause|Apache-2\.0|0BSD|\(MIT OR Apache-2\.0\))$/;
const SOURCE = /\.(m?js|cjs|ts|mts|cts|jsx|tsx)$/;

const { values } = parseArgs({ args: Deno.args, options: { out: { type: "string" } } });
if (!values.out) {
  console.error("usage: tools/fetch_corpus.ts --out DIR");
  Deno.exit(2);
}
const out = values.out;

/** The files of a .tgz: ustar with pax ('x') and GNU ('L') long names. */
async function untar(tgz: Uint8Array): Promise<Map<string, Uint8Array>> {
  const stream = new Blob([tgz as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("gzip"),
  );
  const tar = new Uint8Array(await new Response(stream).arrayBuffer());
  const files = new Map<string, Uint8Array>();
  const dec = new TextDecoder();
  const str = (b: Uint8Array) =>
    dec.decode(b.subarray(0, b.indexOf(0) < 0 ? b.length : b.indexOf(0)));
  let longName: string | null = null;
  for (let at = 0; at + 512 <= tar.length;) {
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(str(h.subarray(124, 136)).trim() || "0", 8);
    const type = String.fromCharCode(h[156]);
    const prefix = str(h.subarray(345, 500));
    let name = longName ??
      (prefix ? `${prefix}/${str(h.subarray(0, 100))}` : str(h.subarray(0, 100)));
    longName = null;
    const data = tar.subarray(at + 512, at + 512 + size);
    if (type === "x") {
      const m = dec.decode(data).match(/\d+ path=([^\n]*)\n/);
      if (m) longName = m[1];
    } else if (type === "L") longName = str(data);
    else if (type === "0" || type === "\0") {
      name = name.replace(/^[^/]+\//, ""); // the tarball's top folder ("package/")
      files.set(name, data.slice());
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

function keep(path: string, text: string): boolean {
  if (!SOURCE.test(path) || /\.d\.[mc]?ts$/.test(path) || /\.min\./.test(path)) return false;
  if (/(^|\/)(test|tests|__tests__|benchmark|benchmarks)\//.test(path)) return false;
  if (text.length < 200 || text.length > 400_000) return false;
  const lines = text.split("\n");
  // Minified or generated code: long lines.
  return lines.filter((l) => l.length > 300).length < lines.length * 0.01 &&
    text.length / lines.length < 80;
}

async function hash(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(d).slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

const manifest: {
  split: string;
  name: string;
  version: string;
  license: string;
  files: number;
  bytes: number;
}[] = [];
const seen = new Set<string>();
for (const [split, list] of [["heldout", HELDOUT], ["train", TRAIN]] as const) {
  await Deno.mkdir(join(out, split), { recursive: true });
  for (const spec of list) {
    const at = spec.lastIndexOf("@");
    const name = spec.slice(0, at), version = spec.slice(at + 1);
    const meta = await (await fetch(`https://registry.npmjs.org/${name}/${version}`)).json();
    const license = typeof meta.license === "string" ? meta.license : meta.license?.type ?? "?";
    if (!LICENSES.test(license)) {
      console.error(`skipping ${spec}: license ${license}`);
      continue;
    }
    const tgz = new Uint8Array(await (await fetch(meta.dist.tarball)).arrayBuffer());
    let files = 0, bytes = 0;
    for (const [path, data] of await untar(tgz)) {
      const text = new TextDecoder("utf-8", { fatal: false }).decode(data);
      if (!keep(path, text)) continue;
      const h = await hash(text);
      if (seen.has(h)) continue; // the same file shipped twice (cjs and esm copies, vendored deps)
      seen.add(h);
      const flat = `${name.replace("/", "__")}__${path.replaceAll("/", "__")}`;
      await Deno.writeTextFile(join(out, split, flat), text);
      files++;
      bytes += data.length;
    }
    manifest.push({ split, name, version, license, files, bytes });
    console.log(
      `${split.padEnd(7)} ${spec.padEnd(24)} ${license.padEnd(12)} ${files} files, ${
        (bytes / 1e6).toFixed(2)
      } MB`,
    );
  }
}
await Deno.writeTextFile(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
const sum = (s: string) => manifest.filter((m) => m.split === s).reduce((a, m) => a + m.bytes, 0);
console.log(
  `train ${(sum("train") / 1e6).toFixed(1)} MB, held-out ${(sum("heldout") / 1e6).toFixed(1)} MB`,
);
