// Files the sandbox embeds in the binary: Pyodide's runtime (`with { type: "file" }`, a path that
// `bun build --compile` maps into the executable) and the Python sources (`with { type: "text" }`).
declare module "*.wasm" {
  const path: string;
  export default path;
}
declare module "*.zip" {
  const path: string;
  export default path;
}
declare module "*.py" {
  const source: string;
  export default source;
}
declare module "pyodide/pyodide.asm.mjs" {
  const createPyodideModule: (settings: object) => Promise<unknown>;
  export default createPyodideModule;
}
