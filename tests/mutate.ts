// The seeded mutation generator of the fuzz tests (a valid safetensors file in, a damaged one out),
// shared by tests/safetensors_fuzz_test.ts (the reader) and tests/load_fuzz_test.ts (loadModel).

/** mulberry32: a tiny seeded PRNG, so a failing case is reproduced from its seed alone. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Random = () => number;
export const below = (r: Random, n: number) => Math.floor(r() * n);
export const pick = <T>(r: Random, items: readonly T[]): T => items[below(r, items.length)];

/** Values that JSON edits put where a header expects a dtype, a size or an offset. */
export const ODD_VALUES: readonly unknown[] = [
  -1,
  0,
  1,
  3,
  7,
  8,
  64,
  -0.5,
  0.5,
  1e-300,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  1e300,
  -1e300,
  Number.MAX_SAFE_INTEGER,
  "F32",
  "F16",
  "BF16",
  "I8",
  "F64",
  "F8_E4M3",
  "F128",
  "",
  "constructor",
  "__proto__",
  "toString",
  "8",
  "[0, 8]",
  null,
  true,
  false,
  [],
  [0],
  [8, 0],
  [-1, 4],
  [0, 1e300],
  [1, 2, 3],
  ["0", "8"],
  [[0, 8]],
  {},
  { "0": 0, "1": 8 },
  { dtype: "F32", shape: [2], data_offsets: [0, 8] },
];

const ODD_NAMES = ["", "__proto__", "constructor", "toString", "__metadata__", "a\u0000b", "😀"];

export function splitFile(bytes: Uint8Array): { header: string; data: Uint8Array } | undefined {
  if (bytes.length < 8) return undefined;
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) return undefined;
  const end = 8 + Number(n);
  return {
    header: new TextDecoder().decode(bytes.subarray(8, end)),
    data: bytes.subarray(end),
  };
}

export function joinFile(header: string, data: Uint8Array): Uint8Array {
  const text = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

/** A JSON edit of one header field, or undefined when the header is not a JSON object. */
function editJson(r: Random, header: string): { header: string; what: string } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(header);
  } catch {
    return undefined;
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const obj = json as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length === 0) return undefined;
  const key = pick(r, keys);
  const value = pick(r, ODD_VALUES);
  const entry = obj[key];
  const field = pick(r, ["dtype", "shape", "data_offsets"]);
  const kind = below(r, 7);
  let what: string;
  if (kind === 0 || typeof entry !== "object" || entry === null) {
    obj[key] = value;
    what = `${key} = ${JSON.stringify(value)}`;
  } else if (kind === 1) {
    (entry as Record<string, unknown>)[field] = value;
    what = `${key}.${field} = ${JSON.stringify(value)}`;
  } else if (kind === 2) {
    const list = (entry as Record<string, unknown>)[field];
    if (!Array.isArray(list) || list.length === 0) return undefined;
    const at = below(r, list.length + 1);
    list[at] = pick(r, [value, value, (list[0] as number) + 1, (list[0] as number) - 1]);
    what = `${key}.${field}[${at}] = ${JSON.stringify(list[at])}`;
  } else if (kind === 3) {
    delete (entry as Record<string, unknown>)[field];
    what = `delete ${key}.${field}`;
  } else if (kind === 4) {
    const name = pick(r, ODD_NAMES);
    const renamed: Record<string, unknown> = {};
    for (const k of keys) renamed[k === key ? name : k] = obj[k];
    return { header: JSON.stringify(renamed), what: `rename ${key} to ${JSON.stringify(name)}` };
  } else if (kind === 5) {
    (entry as Record<string, unknown>).dtype = pick(r, ["F32", "F16", "BF16", "I64", "U8", "BOOL"]);
    what = `${key}.dtype = ${JSON.stringify((entry as Record<string, unknown>).dtype)}`;
  } else {
    // Two entries share their data: overlapping, or identical ranges.
    const other = obj[pick(r, keys)];
    if (typeof other !== "object" || other === null) return undefined;
    (entry as Record<string, unknown>).data_offsets = (other as Record<string, unknown>)
      .data_offsets;
    what = `${key}.data_offsets copied from another entry`;
  }
  return { header: JSON.stringify(obj), what };
}

/** Text edits that JSON.parse lets through: the same key twice, at top level or in an entry. */
function duplicateKey(r: Random, header: string): { header: string; what: string } | undefined {
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(header);
  } catch {
    return undefined;
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) return undefined;
  const keys = Object.keys(obj);
  if (keys.length === 0) return undefined;
  const key = pick(r, keys);
  const body = header.trimEnd();
  if (!body.startsWith("{") || !body.endsWith("}")) return undefined;
  const inner = body.slice(1, -1);
  const copy = `${JSON.stringify(key)}:${JSON.stringify(obj[pick(r, keys)] ?? null)}`;
  switch (below(r, 3)) {
    case 0:
      return { header: `{${copy},${inner}}`, what: `duplicate ${key} first` };
    case 1:
      return { header: `{${inner},${copy}}`, what: `duplicate ${key} last` };
    default: {
      const field = pick(r, ['"dtype":', '"shape":', '"data_offsets":']);
      const at = header.indexOf(field);
      if (at < 0) return undefined;
      const extra = `${field}${JSON.stringify(pick(r, ODD_VALUES))},`;
      return {
        header: header.slice(0, at) + extra + header.slice(at),
        what: `duplicate ${field} inside an entry`,
      };
    }
  }
}

/**
 * Mutates a valid safetensors file. Deterministic in `seed`; `what` says what was done, for the
 * failure message. Applies one to three mutations in a row, so edits also meet each other.
 */
export function mutate(base: Uint8Array, seed: number): { bytes: Uint8Array; what: string } {
  const r = mulberry32(seed);
  let bytes: Uint8Array = base.slice();
  const done: string[] = [];
  const rounds = 1 + below(r, 3) * below(r, 2);
  for (let round = 0; round < rounds; round++) {
    const split = splitFile(bytes);
    const headerEnd = split ? bytes.length - split.data.length : Math.min(bytes.length, 8);
    switch (below(r, 8)) {
      case 0: { // flip header bytes (random bits, or characters that keep JSON plausible)
        if (headerEnd <= 8) break;
        const count = 1 + below(r, 4);
        for (let i = 0; i < count; i++) {
          const at = 8 + below(r, headerEnd - 8);
          bytes[at] = r() < 0.5
            ? bytes[at] ^ (1 + below(r, 255))
            : pick(r, [...'{}[]":,-.e0189 ']).charCodeAt(0);
        }
        done.push(`flip ${count} header byte(s)`);
        break;
      }
      case 1: { // flip data bytes
        if (bytes.length <= headerEnd) break;
        const at = headerEnd + below(r, bytes.length - headerEnd);
        bytes[at] ^= 1 + below(r, 255);
        done.push(`flip data byte ${at}`);
        break;
      }
      case 2: { // truncate
        const at = below(r, bytes.length + 1);
        bytes = bytes.slice(0, at);
        done.push(`truncate to ${at} bytes`);
        break;
      }
      case 3: { // rewrite the header length field
        if (bytes.length < 8) break;
        const n = new DataView(bytes.buffer).getBigUint64(0, true);
        const value = pick(r, [
          n + BigInt(1 + below(r, 16)),
          n - BigInt(1 + below(r, 16)),
          0n,
          1n,
          BigInt(bytes.length - 8),
          BigInt(bytes.length),
          BigInt(below(r, 2 ** 32)),
          100_000_000n,
          100_000_001n,
          2n ** 32n + n,
          2n ** 63n,
          2n ** 64n - 1n,
        ]);
        new DataView(bytes.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
        done.push(`header length = ${BigInt.asUintN(64, value)}`);
        break;
      }
      case 4:
      case 5: { // edit a value in the header's JSON
        const edit = split && editJson(r, split.header);
        if (!edit) break;
        bytes = joinFile(edit.header + " ".repeat(below(r, 8)), split.data);
        done.push(edit.what);
        break;
      }
      case 6: { // duplicated keys
        const edit = split && duplicateKey(r, split.header);
        if (!edit) break;
        bytes = joinFile(edit.header, split.data);
        done.push(edit.what);
        break;
      }
      default: { // grow or shrink the data section
        if (!split) break;
        const delta = below(r, 17) - 8;
        const data = new Uint8Array(Math.max(0, split.data.length + delta));
        data.set(split.data.subarray(0, data.length));
        bytes = joinFile(split.header, data);
        done.push(`data section ${delta >= 0 ? "+" : ""}${delta} bytes`);
      }
    }
  }
  return { bytes, what: done.length ? done.join(", ") : "unchanged" };
}
