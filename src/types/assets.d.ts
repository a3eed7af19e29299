// WGSL and other text assets are imported as strings (`with { type: "text" }`) so `bun build --compile`
// embeds them in the binary.
declare module "*.wgsl" {
  const source: string;
  export default source;
}
