/**
 * CPU reference for ops/attention.ts: the same contract (layouts, causal window, padding rows, GQA
 * head mapping), computed in float64 the plain way — full softmax over each row's visible keys.
 */
import type { AttentionDims } from "./attention.ts";

type Arr = ArrayLike<number>;

interface Row {
  b: number;
  t: number;
  h: number;
  hk: number;
  pos: number;
  kvl: number;
  /** Offset of the row in q/out/dout. */
  qo: number;
}

function* rows(d: AttentionDims, qStart: Arr, kvLen: Arr): Generator<Row> {
  const group = d.Hq / d.Hkv;
  for (let b = 0; b < d.B; b++) {
    const kvl = Math.min(kvLen[b]!, d.Tk);
    for (let t = 0; t < d.Tq; t++) {
      for (let h = 0; h < d.Hq; h++) {
        yield { b, t, h, hk: Math.floor(h / group), pos: qStart[b]! + t, kvl, qo: ((b * d.Tq + t) * d.Hq + h) * d.hd };
      }
    }
  }
}

const kvOffset = (d: AttentionDims, b: number, j: number, hk: number) => ((b * d.Tk + j) * d.Hkv + hk) * d.hd;

/** Probabilities of one valid query row over keys 0..pos, and its log-sum-exp. */
function softmaxRow(d: AttentionDims, q: Arr, k: Arr, r: Row): { p: Float64Array; lse: number } {
  const scale = 1 / Math.sqrt(d.hd);
  const n = r.pos + 1;
  const s = new Float64Array(n);
  let m = -Infinity;
  for (let j = 0; j < n; j++) {
    const ko = kvOffset(d, r.b, j, r.hk);
    let acc = 0;
    for (let e = 0; e < d.hd; e++) acc += q[r.qo + e]! * k[ko + e]!;
    s[j] = acc * scale;
    m = Math.max(m, s[j]!);
  }
  let sum = 0;
  for (let j = 0; j < n; j++) sum += Math.exp(s[j]! - m);
  const lse = m + Math.log(sum);
  for (let j = 0; j < n; j++) s[j] = Math.exp(s[j]! - lse);
  return { p: s, lse };
}

export function attentionRef(q: Arr, k: Arr, v: Arr, qStart: Arr, kvLen: Arr, d: AttentionDims): { out: Float64Array; lse: Float64Array } {
  const out = new Float64Array(d.B * d.Tq * d.Hq * d.hd);
  const lse = new Float64Array(d.B * d.Hq * d.Tq);
  for (const r of rows(d, qStart, kvLen)) {
    if (r.pos >= r.kvl) continue;
    const sm = softmaxRow(d, q, k, r);
    lse[(r.b * d.Hq + r.h) * d.Tq + r.t] = sm.lse;
    for (let j = 0; j <= r.pos; j++) {
      const vo = kvOffset(d, r.b, j, r.hk);
      for (let e = 0; e < d.hd; e++) out[r.qo + e] += sm.p[j]! * v[vo + e]!;
    }
  }
  return { out, lse };
}

/** Gradients of Σ dout·out with respect to q, k, v (dk/dv summed over the query heads of each kv head). */
export function attentionBackwardRef(
  q: Arr,
  k: Arr,
  v: Arr,
  qStart: Arr,
  kvLen: Arr,
  dout: Arr,
  d: AttentionDims,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const scale = 1 / Math.sqrt(d.hd);
  const dq = new Float64Array(d.B * d.Tq * d.Hq * d.hd);
  const dk = new Float64Array(d.B * d.Tk * d.Hkv * d.hd);
  const dv = new Float64Array(d.B * d.Tk * d.Hkv * d.hd);
  for (const r of rows(d, qStart, kvLen)) {
    if (r.pos >= r.kvl) continue;
    const { p } = softmaxRow(d, q, k, r);
    const n = r.pos + 1;
    // dP_j = dout · v_j ; dS_j = P_j (dP_j − Σ_i P_i dP_i)
    const dp = new Float64Array(n);
    let dot = 0;
    for (let j = 0; j < n; j++) {
      const vo = kvOffset(d, r.b, j, r.hk);
      let acc = 0;
      for (let e = 0; e < d.hd; e++) {
        acc += dout[r.qo + e]! * v[vo + e]!;
        dv[vo + e] += p[j]! * dout[r.qo + e]!;
      }
      dp[j] = acc;
      dot += p[j]! * acc;
    }
    for (let j = 0; j < n; j++) {
      const ds = p[j]! * (dp[j]! - dot) * scale;
      const ko = kvOffset(d, r.b, j, r.hk);
      for (let e = 0; e < d.hd; e++) {
        dq[r.qo + e] += ds * k[ko + e]!;
        dk[ko + e] += ds * q[r.qo + e]!;
      }
    }
  }
  return { dq, dk, dv };
}
