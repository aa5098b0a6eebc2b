/**
 * Draws the loss curves of a training run (run.json, written by `deno task train`) as an SVG:
 * the training loss of each head per log point, and the held-out losses where measured.
 *
 *     deno run -A tools/loss_curve.ts RUN.json OUT.svg
 * @module
 */
const [input, output] = Deno.args;
if (!input || !output) {
  console.error("usage: tools/loss_curve.ts RUN.json OUT.svg");
  Deno.exit(2);
}
const run = JSON.parse(await Deno.readTextFile(input)) as {
  history: { step: number; train: number[]; heldout?: number[] }[];
};
const train = run.history.filter((h) => h.train.length > 0 && !h.heldout);
const held = run.history.filter((h) => h.heldout);
const heads = train[0].train.length;
const W = 720, H = 420, L = 60, R = 150, T = 30, B = 50;
const maxStep = Math.max(...run.history.map((h) => h.step));
const maxLoss = Math.ceil(Math.max(...train.flatMap((h) => h.train)));
const x = (s: number) => L + (s / maxStep) * (W - L - R);
const y = (v: number) => T + (1 - v / maxLoss) * (H - T - B);
const colors = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
];
const parts: string[] = [
  `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
  `<rect width="${W}" height="${H}" fill="white"/>`,
  `<text x="${L}" y="18" font-size="14">Loss per head (nats per byte): training (lines), held-out (dots)</text>`,
];
for (let v = 0; v <= maxLoss; v++) {
  parts.push(
    `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
    `<text x="${L - 8}" y="${y(v) + 4}" text-anchor="end">${v}</text>`,
  );
}
for (let s = 0; s <= maxStep; s += maxStep / 4) {
  parts.push(`<text x="${x(s)}" y="${H - B + 18}" text-anchor="middle">${Math.round(s)}</text>`);
}
parts.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">training step</text>`);
for (let j = 0; j < heads; j++) {
  const pts = train.map((h) => `${x(h.step).toFixed(1)},${y(h.train[j]).toFixed(1)}`).join(" ");
  parts.push(
    `<polyline fill="none" stroke="${colors[j % 8]}" stroke-width="1.5" points="${pts}"/>`,
  );
  for (const h of held) {
    parts.push(
      `<circle cx="${x(h.step)}" cy="${y(h.heldout![j])}" r="4" fill="${colors[j % 8]}"/>`,
    );
  }
  parts.push(
    `<line x1="${W - R + 15}" x2="${W - R + 35}" y1="${T + 20 * j + 10}" y2="${
      T + 20 * j + 10
    }" stroke="${colors[j % 8]}" stroke-width="2"/>`,
    `<text x="${W - R + 42}" y="${T + 20 * j + 14}">head ${j + 1} (t+${j + 1})</text>`,
  );
}
parts.push("</svg>");
await Deno.writeTextFile(output, parts.join("\n") + "\n");
