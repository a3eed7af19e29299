/**
 * A typed view of (part of) a GPU buffer. Shapes are row-major; element offsets are in elements.
 * bf16 has no WGSL type: kernels read such a tensor as u32 words of two values, element 2i in the low half (the byte
 * order torch and safetensors use), and a value's f32 is its 16 bits on top of 16 zero bits.
 */
export type DType = "f32" | "f16" | "bf16" | "u32" | "i32";

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, u32: 4, i32: 4 };

export class Tensor {
  constructor(
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType = "f32",
    /** Offset of the first element, in bytes from the start of `buffer`. */
    readonly byteOffset = 0,
  ) {}

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get byteLength(): number {
    return this.numel * DTYPE_BYTES[this.dtype];
  }

  /** Same memory, new shape (must hold the same number of elements). */
  view(shape: readonly number[]): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== this.numel) throw new Error(`Tensor.view: cannot view [${this.shape}] as [${shape}]`);
    return new Tensor(this.buffer, shape, this.dtype, this.byteOffset);
  }
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
