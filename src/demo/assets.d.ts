// The demo's warm-start weights ship in the binary (`with { type: "file" }`: a path).
declare module "*.safetensors" {
  const path: string;
  export default path;
}
