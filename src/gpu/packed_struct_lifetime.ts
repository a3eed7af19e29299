/**
 * Keeps bun-webgpu's packed descriptors alive until Dawn has read them.
 *
 * bun-webgpu (0.1.x) packs every WebGPU descriptor into JS ArrayBuffers, and nested parts — entry arrays,
 * label and WGSL strings, override-constant arrays, feature lists, chained structs — go into buffers of their
 * own whose raw address (`ptr()`) is written into the parent. After that only the number refers to them, so a
 * garbage collection that runs before the FFI call (any allocation in between may start one: the BigInts the
 * packer makes, the next field's buffer) frees them, and Dawn reads freed, possibly reused, memory: garbage
 * feature ids in requestDevice, garbage buffer or string pointers in createBindGroup / createComputePipeline,
 * and so a segfault somewhere inside Dawn after minutes of training.
 *
 * The fix, without patching node_modules: while a guarded method runs, `new ArrayBuffer` makes a subclass that
 * records itself, and `TextEncoder.prototype.encode` records its result; the records are dropped when the
 * outermost guarded call returns (Dawn copies what it keeps before returning from the call).
 */
const NativeArrayBuffer = globalThis.ArrayBuffer;
const nativeEncode = TextEncoder.prototype.encode;

let scratch: object[] = [];
let depth = 0;

class RecordedArrayBuffer extends NativeArrayBuffer {
  constructor(length: number, options?: { maxByteLength?: number }) {
    super(length, options);
    scratch.push(this);
  }
}

function recordingEncode(this: TextEncoder, input?: string): Uint8Array<ArrayBuffer> {
  const bytes = nativeEncode.call(this, input);
  scratch.push(bytes);
  return bytes;
}

/** Runs `fn` with every ArrayBuffer and encoded string it creates held reachable until it returns. */
export function holdingPackedStructs<T>(fn: () => T): T {
  if (depth++ === 0) {
    globalThis.ArrayBuffer = RecordedArrayBuffer as unknown as ArrayBufferConstructor;
    TextEncoder.prototype.encode = recordingEncode;
  }
  try {
    return fn();
  } finally {
    if (--depth === 0) {
      globalThis.ArrayBuffer = NativeArrayBuffer;
      TextEncoder.prototype.encode = nativeEncode;
      scratch = [];
    }
  }
}

/** How many objects the current guarded call holds (0 outside one). For tests. */
export function heldCount(): number {
  return scratch.length;
}

const guarded = new WeakSet<object>();

/**
 * Wraps the named methods of `target`'s prototype (once per prototype) so each runs inside
 * `holdingPackedStructs`. `after` sees each result (e.g. to guard the prototype of an object it returns).
 * Methods the prototype lacks are skipped: a later bun-webgpu may rename them.
 */
export function guardMethods(target: object, names: readonly string[], after?: (name: string, result: unknown) => void): void {
  const proto = Object.getPrototypeOf(target) as Record<string, unknown> | null;
  if (!proto || guarded.has(proto)) return;
  guarded.add(proto);
  for (const name of names) {
    const original = proto[name];
    if (typeof original !== "function") continue;
    const method = original as (...args: unknown[]) => unknown;
    proto[name] = function (this: unknown, ...args: unknown[]): unknown {
      const result = holdingPackedStructs(() => method.apply(this, args));
      after?.(name, result);
      return result;
    };
  }
}
