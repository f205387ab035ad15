// Compile Open WebUI sources the way its build does: each .svelte file with Svelte's compiler
// (the version Open WebUI pins, installed beside this run), each .ts file through TypeScript's
// transpiler. Prints one JSON object: {file: {errors: [...], warnings: [...]}}.
//
//   node compile_check.mjs <node_modules dir> <source root> <file> [<file> ...]
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const [modules, root, ...files] = process.argv.slice(2);
const require = createRequire(join(resolve(modules), "noop.js"));
const svelte = require("svelte/compiler");
const ts = require("typescript");

function describe(problem) {
  const where = problem.start ? `${problem.start.line}:${problem.start.column}` : "";
  return `${problem.code || "error"} ${where} ${problem.message}`.trim();
}

const report = {};
for (const file of files) {
  const source = readFileSync(join(root, file), "utf8");
  const result = { errors: [], warnings: [] };
  if (file.endsWith(".svelte")) {
    try {
      const compiled = svelte.compile(source, { filename: file, generate: "client", dev: false });
      result.warnings = compiled.warnings.map(describe);
    } catch (error) {
      result.errors.push(describe(error));
    }
  } else if (file.endsWith(".ts")) {
    const out = ts.transpileModule(source, { fileName: file, reportDiagnostics: true,
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } });
    result.errors = (out.diagnostics || []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  }
  report[file] = result;
}
console.log(JSON.stringify({ svelte: svelte.VERSION, files: report }));
