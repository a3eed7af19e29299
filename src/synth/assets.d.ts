// The LLM synthesis prompts ship in the binary as text (`with { type: "text" }`).
declare module "*.txt" {
  const text: string;
  export default text;
}
