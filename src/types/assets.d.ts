// WGSL and other text assets are imported as strings (`with { type: "text" }`) so `bun build --compile`
// embeds them in the binary.
declare module "*.wgsl" {
  const source: string;
  export default source;
}

// Small data files shipped inside the binary (the demo's questions and corpus).
declare module "*.jsonl" {
  const text: string;
  export default text;
}
