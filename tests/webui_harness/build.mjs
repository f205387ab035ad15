// Bundle Open WebUI's patched Monitoring page into a page of its own, for the browser test:
// the page and its API helper are the patched files as they are; the rest of Open WebUI (its
// i18n context) is stubbed by main.js; its Tailwind classes are built by Tailwind's CLI as Open
// WebUI's build does (without Open WebUI's own theme); Svelte, esbuild and Tailwind come from
// <node_modules>.
//
//   node build.mjs <node_modules dir> <patched sources root> <out dir>
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const [modules, root, out] = process.argv.slice(2).map((p) => resolve(p));
const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(modules, "noop.js"));
const esbuild = require("esbuild");
const svelte = require("svelte/compiler");

const openWebUI = {
  name: "open-webui-sources",
  setup(build) {
    build.onResolve({ filter: /^\$lib\/apis\/portal$/ }, () => ({ path: join(root, "src/lib/apis/portal/index.ts") }));
    build.onResolve({ filter: /^monitoring-page$/ }, () => ({
      path: join(root, "src/routes/(app)/admin/monitoring/+page.svelte") }));
    build.onLoad({ filter: /\.svelte$/ }, (args) => {
      const { js, warnings } = svelte.compile(readFileSync(args.path, "utf8"), { filename: args.path, generate: "client" });
      return { contents: js.code, loader: "js", resolveDir: dirname(args.path),
        warnings: warnings.map((w) => ({ text: w.message })) };
    });
  },
};

await esbuild.build({
  entryPoints: [join(here, "main.js")], bundle: true, format: "esm", outfile: join(out, "harness.js"),
  nodePaths: [modules], plugins: [openWebUI], logLevel: "error",
  conditions: ["browser"], define: { "import.meta.env.VITE_AGENT_PORTAL_URL": "window.PORTAL_URL" },
});
// Tailwind resolves its own import from where the input file is: beside <node_modules>
const input = join(dirname(modules), "harness-tailwind.css");
writeFileSync(input, `@import "tailwindcss";\n@source "${join(root, "src")}";\n`);
execFileSync(process.execPath, [join(modules, "@tailwindcss/cli/dist/index.mjs"), "-i", input, "-o",
  join(out, "harness.css")], { stdio: "pipe" });
copyFileSync(join(here, "index.html"), join(out, "index.html"));
console.log(`bundled into ${out}`);
