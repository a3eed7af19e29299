/**
 * The f32 → bf16 cast kernel (src/ops/cast.ts) against the CPU reference (f32ToBf16, torch's rounding): every
 * rounding case, specials, odd counts, views that start inside a buffer, and tensors cast in binding windows.
 */
import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/gpu/tensor.ts";
import { castToBf16 } from "../src/ops/cast.ts";
import { f32ToBf16 } from "../src/ops/cast.ref.ts";
import { randn, rng } from "./harness.ts";

setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

/** Values whose low 16 bits sit at and around the rounding boundary, plus zeros, subnormals, infinities and NaNs. */
function hardValues(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const bits = new Uint32Array(n);
  const specials = [0, 0x80000000, 0x00000001, 0x8000ffff, 0x007fffff, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f80ffff];
  for (let i = 0; i < n; i++) {
    const high = Math.floor(r() * 0x10000);
    const low = [0x8000, 0x7fff, 0x8001, 0xffff, 0, Math.floor(r() * 0x10000)][i % 6]!;
    bits[i] = i < specials.length ? specials[i]! : ((high << 16) | low) >>> 0;
  }
  return new Float32Array(bits.buffer);
}

/** The bf16 values of a tensor: its words split into halves, element 2i the low half. */
async function readBf16(t: Tensor): Promise<Uint16Array> {
  const words = new Uint32Array(await gpu.read(new Tensor(t.buffer, [Math.ceil(t.numel / 2)], "u32", t.byteOffset)));
  return new Uint16Array(words.buffer).slice(0, t.numel);
}

describe("castToBf16", () => {
  test("equals f32ToBf16 bit for bit: rounding ties, carries into the exponent, subnormals, ±0, ±inf, NaN; odd counts", async () => {
    let seed = 10;
    for (const n of [1, 2, 3, 17, 64, 129, 1001]) {
      const x = hardValues(n, seed++);
      const src = gpu.upload(x, [n]);
      const dst = gpu.zeros([n], "bf16");
      castToBf16(gpu, src, dst);
      expect(await readBf16(dst)).toEqual(f32ToBf16(x));
      gpu.release(src, dst);
    }
  });

  test("views inside larger buffers: only the view's words change", async () => {
    const x = randn(300, 5);
    const src = gpu.upload(x, [300]);
    const big = gpu.upload(new Uint16Array(512).fill(0xabcd), [512], "bf16");
    // 37 values from element 20 (a whole word), read from element 100 of src.
    const view = new Tensor(big.buffer, [37], "bf16", 40);
    castToBf16(gpu, new Tensor(src.buffer, [37], "f32", 400), view);
    const all = await readBf16(big);
    const want = new Uint16Array(512).fill(0xabcd);
    want.set(f32ToBf16(x.slice(100, 137)), 20);
    want[57] = 0; // the view's odd last word: its high half is written as 0
    expect(all).toEqual(want);
    expect(() => castToBf16(gpu, new Tensor(src.buffer, [3], "f32"), new Tensor(big.buffer, [3], "bf16", 2))).toThrow(/4-byte word/);
    expect(() => castToBf16(gpu, src, gpu.empty([299], "bf16"))).toThrow(/into/);
    gpu.release(src, big);
  });

  test("in binding windows (a small binding limit): the same bits", async () => {
    const n = 5003;
    const x = hardValues(n, 77);
    const src = gpu.upload(x, [n]);
    const dst = gpu.zeros([n], "bf16");
    castToBf16(gpu, src, dst, { maxBindingBytes: 4096 });
    expect(await readBf16(dst)).toEqual(f32ToBf16(x));
    gpu.release(src, dst);
  });
});
