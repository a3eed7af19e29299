/**
 * The shared memory between the index builder (reading rows) and the corpus decoder thread (writing them): how many
 * bytes of the rows file are written, how much of the source is consumed, whether the decoder finished or failed (and
 * why). The builder is synchronous, so it waits on `seq` with Atomics.wait instead of an event.
 */
const SEQ = 0, STATE = 1, MESSAGE_LEN = 2; // Int32 slots
const WRITTEN = 2, SOURCE_DONE = 3, SOURCE_TOTAL = 4; // Float64 slots (bytes 16..40)
const MESSAGE_AT = 64, MESSAGE_MAX = 4096;

export const enum DecoderStatus {
  Running = 0,
  Done = 1,
  Failed = 2,
}

export class DecoderState {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly msg: Uint8Array;

  constructor(readonly sab: SharedArrayBuffer = new SharedArrayBuffer(MESSAGE_AT + MESSAGE_MAX)) {
    this.i32 = new Int32Array(sab, 0, 4);
    this.f64 = new Float64Array(sab, 0, 8);
    this.msg = new Uint8Array(sab, MESSAGE_AT, MESSAGE_MAX);
  }

  // ---- decoder side ----
  publish(written: number, sourceDone: number, sourceTotal: number): void {
    this.f64[WRITTEN] = written;
    this.f64[SOURCE_DONE] = sourceDone;
    this.f64[SOURCE_TOTAL] = sourceTotal;
    this.bump();
  }

  finish(): void {
    Atomics.store(this.i32, STATE, DecoderStatus.Done);
    this.bump();
  }

  fail(message: string): void {
    const bytes = new TextEncoder().encode(message).subarray(0, MESSAGE_MAX);
    this.msg.set(bytes);
    this.i32[MESSAGE_LEN] = bytes.length;
    Atomics.store(this.i32, STATE, DecoderStatus.Failed);
    this.bump();
  }

  private bump(): void {
    Atomics.add(this.i32, SEQ, 1);
    Atomics.notify(this.i32, SEQ);
  }

  // ---- reader side ----
  get seq(): number {
    return Atomics.load(this.i32, SEQ);
  }

  get status(): DecoderStatus {
    return Atomics.load(this.i32, STATE) as DecoderStatus;
  }

  get written(): number {
    return this.f64[WRITTEN]!;
  }

  get sourceFraction(): number {
    const total = this.f64[SOURCE_TOTAL]!;
    return total > 0 ? Math.min(1, this.f64[SOURCE_DONE]! / total) : 0;
  }

  get message(): string {
    return new TextDecoder().decode(this.msg.slice(0, this.i32[MESSAGE_LEN]!));
  }

  /** Sleeps until the decoder publishes something after `seq` (or `ms` pass). */
  waitAfter(seq: number, ms: number): void {
    Atomics.wait(this.i32, SEQ, seq, ms);
  }
}
