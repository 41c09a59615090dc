// Builds the console into ../app/static/console (committed, so `pip install` needs no Node):
//   cd console && npm ci && npm run build
// index.html keeps {{BASE}}, {{GRAPHQL}} and {{ASSETS}} for the server (app/console.py) to fill;
// SOURCE_HASH records which sources were built (tests/test_console.py checks it is current).
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, mkdirSync, writeFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = new URL(".", import.meta.url).pathname;
const out = join(here, "..", "app", "static", "console");
const assets = join(out, "assets");

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** sha256 over the build's inputs: path NUL content NUL, in path order. */
export function sourceHash() {
  const files = ["build.mjs", "package.json", "package-lock.json", "tsconfig.json", ...walk(join(here, "src")).map((p) => relative(here, p))]
    .map((p) => p.split(sep).join("/"))
    .sort();
  const hash = createHash("sha256");
  for (const file of files) {
    hash.update(file + "\0");
    hash.update(readFileSync(join(here, file)));
    hash.update("\0");
  }
  return hash.digest("hex");
}

/** The licence of every npm package with code in the bundle, with its licence text. */
function licences(inputs) {
  const packages = new Set();
  for (const input of inputs) {
    const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//g);
    if (m) packages.add(m[m.length - 1].slice("node_modules/".length, -1));
  }
  const parts = ["Third-party code bundled in lgql's console (app/static/console), by npm package.\n"];
  for (const name of [...packages].sort()) {
    const dir = join(here, "node_modules", name);
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
    const text = file ? readFileSync(join(dir, file), "utf8").trim() : "(no licence file in the package)";
    parts.push(`==== ${name} ${pkg.version} (${pkg.license ?? "see below"})\n\n${text}\n`);
  }
  return parts.join("\n");
}

rmSync(out, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

const result = await esbuild.build({
  entryPoints: [join(here, "src", "main.tsx")],
  bundle: true,
  splitting: true,
  format: "esm",
  minify: true,
  target: ["es2020"],
  outdir: assets,
  entryNames: "[name]-[hash]",
  chunkNames: "chunks/[name]-[hash]",
  assetNames: "[name]-[hash]",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.entries(result.metafile.outputs);
const entry = outputs.find(([, o]) => o.entryPoint?.endsWith("main.tsx"));
const js = relative(assets, entry[0]);
const css = relative(assets, entry[1].cssBundle);
const template = readFileSync(join(here, "src", "index.html"), "utf8");
writeFileSync(join(out, "index.html"), template.replace("{{JS}}", js).replace("{{CSS}}", css));
writeFileSync(join(out, "SOURCE_HASH"), sourceHash() + "\n");
writeFileSync(join(out, "THIRD_PARTY_LICENSES.txt"), licences(Object.keys(result.metafile.inputs)));

const gz = (path) => gzipSync(readFileSync(path), { level: 9 }).length;
const initial = [join(out, "index.html"), join(assets, js), join(assets, css)];
// Static imports of the entry load with it; dynamic ones (mermaid) only when a graph is drawn.
for (const imp of entry[1].imports) if (imp.kind === "import-statement") initial.push(join(here, imp.path));
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
const total = walk(out).reduce((n, p) => n + gz(p), 0);
console.log(`initial load: ${kb(initial.reduce((n, p) => n + gz(p), 0))} gzipped (${initial.length} files); everything: ${kb(total)} gzipped`);
