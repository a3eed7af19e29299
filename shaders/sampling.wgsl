// Next-token sampling from logits [B, V] on the GPU: greedy, temperature, top-k, top-p; only the
// sampled u32 ids leave the GPU. One workgroup per row.
//
// Definitions (the CPU reference in src/ops/sampling.ref.ts follows them exactly):
//   greedy (temperature ≤ 0)  argmax, ties to the lowest id
//   weights                   w_i = exp((l_i − max l) / T)
//   top-k (0 < k < V)         keep l_i ≥ the k-th largest logit (ties at the boundary are kept, as
//                             in transformers' TopKLogitsWarper)
//   top-p (0 < p < 1)         among the top-k survivors, keep i when the weight of tokens with a
//                             strictly larger logit is < p · (their total weight) — the smallest
//                             set of top tokens reaching mass p, as in TopPLogitsWarper
//   draw                      u = Philox4x32-10(counter = (step, sequence, 0, 0), key = seed)
//                             → the first output's top 24 bits / 2^24; the token is the first
//                             kept id (in id order) whose cumulative weight exceeds u · total
//   log-prob (when asked)     log softmax(l / T) at the sampled id over the whole vocabulary (T = 1
//                             when greedy): before top-k/top-p, the quantity the trainer recomputes
//                             as the old policy's log-prob, so the two can be compared
// The key depends only on (seed, sequence id, step), so a row's draw does not depend on which other
// rows share the batch or where it sits.
//
// No sort: both filters are "the largest key t with Σ_{key ≥ t} weight ≥ goal" over the
// order-preserving u32 image of the logits (weight 1 and goal k for top-k; weight w_i and goal
// p·Σw for top-p, which keeps exactly the tokens whose strictly-larger mass is < p·Σw). That key is
// found by a radix select, 4 bits per round: 8 sweeps of the row, each building a 16-bucket
// histogram per lane and one workgroup reduction. The draw sweeps contiguous chunks per lane,
// scans the lane sums, and the lane holding u · total walks its chunk.
//
// The workgroup size is an override: 8 on CPU adapters (lavapipe: one SIMD group, so a barrier is one
// switch and lane 0's reductions walk 8 lanes), 256 elsewhere.

struct Params {
  B: u32, V: u32, rowStride: u32, baseLogits: u32,
  baseOut: u32, baseSeq: u32, baseStep: u32, topK: u32,
  temperature: f32, topP: f32, seedLo: u32, seedHi: u32,
  // Always WG and 8: loop bounds read from the uniform block are not unrolled by the compiler,
  // which keeps lavapipe's compile time of this shader near a second instead of tens of seconds.
  lanes: u32, rounds: u32, wantLogprob: u32, baseLogprob: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> seqIds: array<u32>;
@group(0) @binding(3) var<storage, read> steps: array<u32>;
@group(0) @binding(4) var<storage, read_write> outIds: array<u32>;
@group(0) @binding(5) var<storage, read_write> outLogprob: array<f32>;

override WG: u32 = 64u;
const NONE = 0xffffffffu;
const NONFINITE = 0xfffffffeu;

// Per-lane partial results, reduced serially by lane 0 (one barrier per reduction: on lavapipe every
// barrier is a coroutine switch per SIMD group and a code-size cost, so trees of barriers are avoided).
var<workgroup> laneF: array<f32, WG>;
var<workgroup> laneU: array<u32, WG>;
var<workgroup> hist: array<vec4f, 4u * WG>;

// What lane 0 decided, broadcast with workgroupUniformLoad.
struct Decision { id: u32, acc: f32, goal: f32, all: f32 }
var<workgroup> decision: Decision;

// ---- Philox4x32-10 (Salmon et al. 2011, Random123) -----------------------------------------------
fn mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let ll = al * bl;
  let lh = al * bh;
  let hl = ah * bl;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return ah * bh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}

fn philox(ctr: vec4u, key: vec2u) -> vec4u {
  var c = ctr;
  var k = key;
  for (var r = 0u; r < 10u; r++) {
    if (r > 0u) { k += vec2u(0x9E3779B9u, 0xBB67AE85u); }
    let m0 = 0xD2511F53u;
    let m1 = 0xCD9E8D57u;
    let hi0 = mulhi(m0, c.x);
    let lo0 = m0 * c.x;
    let hi1 = mulhi(m1, c.z);
    let lo1 = m1 * c.z;
    c = vec4u(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
  }
  return c;
}

// ---- helpers ---------------------------------------------------------------------------------------

// Order-preserving map of f32 onto u32: a < b ⇔ orderKey(a) < orderKey(b) (for non-NaN values).
fn orderKey(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(~b, b | 0x80000000u, (b & 0x80000000u) == 0u);
}

// Index of the largest logit of the row (lowest id among ties).
// A row holding NaN or +Inf has no distribution to sample from: argmaxRow returns NONFINITE for it (tested on the
// bits, since WGSL does not promise NaN comparisons), and the host refuses to go on. −Inf is a masked id, allowed.
fn nonFinite(x: f32) -> bool {
  let bits = bitcast<u32>(x);
  return (bits & 0x7fffffffu) > 0x7f800000u || bits == 0x7f800000u;
}

fn argmaxRow(l: u32, row: u32) -> u32 {
  var bv = 0.0;
  var bi = NONE;
  var bad = false;
  for (var i = l; i < p.V; i += WG) {
    let v = logits[row + i];
    bad = bad || nonFinite(v);
    if (bi == NONE || v > bv) { bv = v; bi = i; }
  }
  laneF[l] = bv;
  laneU[l] = select(bi, NONFINITE, bad);
  workgroupBarrier();
  if (l == 0u) {
    var best = NONE;
    var bestV = 0.0;
    var anyBad = false;
    for (var m = 0u; m < p.lanes; m++) {
      let i = laneU[m];
      anyBad = anyBad || i == NONFINITE;
      if (i != NONE && i != NONFINITE && (best == NONE || laneF[m] > bestV || (laneF[m] == bestV && i < best))) {
        best = i;
        bestV = laneF[m];
      }
    }
    decision.id = select(best, NONFINITE, anyBad);
  }
  return workgroupUniformLoad(&decision).id;
}

// Greedy rows' log-prob: log softmax(l) at the argmax = −log Σ exp(l_i − M).
fn greedyLogprob(l: u32, row: u32, M: f32) -> f32 {
  var s = 0.0;
  for (var i = l; i < p.V; i += WG) { s += exp(logits[row + i] - M); }
  laneF[l] = s;
  workgroupBarrier();
  if (l == 0u) {
    var total = 0.0;
    for (var m = 0u; m < p.lanes; m++) { total += laneF[m]; }
    decision.all = total;
  }
  return -log(workgroupUniformLoad(&decision).all);
}

// The largest key t with Σ_{key ≥ t, key ≥ floorKey} weight ≥ goal, where weight is 1 (counting)
// or exp((x − M)/T); with `relative`, goal = goalIn · (total weight). Radix select, 4 bits a round:
// `prefix` holds the bits chosen so far, `acc` the weight of keys above the current prefix.
fn radixSelect(l: u32, row: u32, floorKey: u32, M: f32, counting: bool, goalIn: f32, relative: bool) -> u32 {
  var prefix = 0u;
  var acc = 0.0;
  var goal = goalIn;
  for (var round = 0u; round < p.rounds; round++) {
    let shift = 28u - 4u * round;
    var h0 = vec4f(0.0);
    var h1 = vec4f(0.0);
    var h2 = vec4f(0.0);
    var h3 = vec4f(0.0);
    for (var i = l; i < p.V; i += WG) {
      let x = logits[row + i];
      let k = orderKey(x);
      // Keys sharing the chosen high bits (none chosen yet in the first round).
      let same = round == 0u || (k >> (shift + 4u)) == (prefix >> (shift + 4u));
      if (same && k >= floorKey) {
        var w = 1.0;
        if (!counting) { w = exp((x - M) / p.temperature); }
        let d = (k >> shift) & 15u;
        let one = select(vec4f(0.0), vec4f(w), vec4u(d & 3u) == vec4u(0u, 1u, 2u, 3u));
        let q = d >> 2u;
        h0 += select(vec4f(0.0), one, q == 0u);
        h1 += select(vec4f(0.0), one, q == 1u);
        h2 += select(vec4f(0.0), one, q == 2u);
        h3 += select(vec4f(0.0), one, q == 3u);
      }
    }
    hist[4u * l] = h0;
    hist[4u * l + 1u] = h1;
    hist[4u * l + 2u] = h2;
    hist[4u * l + 3u] = h3;
    workgroupBarrier();
    if (l == 0u) {
      var t0 = vec4f(0.0);
      var t1 = vec4f(0.0);
      var t2 = vec4f(0.0);
      var t3 = vec4f(0.0);
      for (var m = 0u; m < p.lanes; m++) {
        t0 += hist[4u * m];
        t1 += hist[4u * m + 1u];
        t2 += hist[4u * m + 2u];
        t3 += hist[4u * m + 3u];
      }
      var g = goal;
      if (relative && round == 0u) { g = goalIn * dot(t0 + t1 + t2 + t3, vec4f(1.0)); }
      // Highest bucket where the weight at or above reaches the goal; if rounding leaves the goal
      // just out of reach, the lowest non-empty bucket (keep everything that remains).
      let tot = array<vec4f, 4>(t0, t1, t2, t3);
      var digit = NONE;
      var a = acc;
      var lowest = 0u;
      var aLowest = acc;
      var run = acc;
      for (var d = 15i; d >= 0; d--) {
        let v = tot[u32(d) >> 2u][u32(d) & 3u];
        if (v > 0.0) {
          lowest = u32(d);
          aLowest = run;
          if (digit == NONE && run + v >= g) { digit = u32(d); a = run; }
        }
        run += v;
      }
      if (digit == NONE) { digit = lowest; a = aLowest; }
      decision = Decision(digit, a, g, 0.0);
    }
    let dec = workgroupUniformLoad(&decision);
    prefix |= dec.id << shift;
    acc = dec.acc;
    goal = dec.goal;
  }
  return prefix;
}

@compute @workgroup_size(WG)
fn sample(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) l: u32) {
  let b = wid.x;
  if (b >= p.B || p.V == 0u) { return; }
  let row = p.baseLogits + b * p.rowStride;
  let best = argmaxRow(l, row);
  if (best == NONFINITE) {
    if (l == 0u) {
      outIds[p.baseOut + b] = NONFINITE;
      if (p.wantLogprob != 0u) { outLogprob[p.baseLogprob + b] = 0.0; }
    }
    return;
  }
  let M = logits[row + best];
  if (p.temperature <= 0.0) {
    if (p.wantLogprob != 0u) {
      let lp = greedyLogprob(l, row, M);
      if (l == 0u) { outLogprob[p.baseLogprob + b] = lp; }
    }
    if (l == 0u) { outIds[p.baseOut + b] = best; }
    return;
  }

  // Filter 0: top-k (the k-th largest logit's key). Filter 1: top-p among the top-k survivors.
  // One call site keeps the shader small (it matters to lavapipe's compile time).
  var thr = 0u;
  for (var f = 0u; f < 2u; f++) {
    let isK = f == 0u;
    let on = select((p.topP > 0.0) && (p.topP < 1.0), (p.topK > 0u) && (p.topK < p.V), isK);
    if (on) {
      thr = max(thr, radixSelect(l, row, thr, M, isK, select(p.topP, f32(p.topK), isK), !isK));
    }
  }

  // Draw: lane l owns ids [l·C, min((l+1)·C, V)).
  let C = (p.V + WG - 1u) / WG;
  let i0 = min(l * C, p.V);
  let i1 = min(i0 + C, p.V);
  var s = 0.0;
  var all = 0.0;
  for (var i = i0; i < i1; i++) {
    let x = logits[row + i];
    let w = exp((x - M) / p.temperature);
    all += w;
    if (orderKey(x) >= thr) { s += w; }
  }
  laneF[l] = s;
  // hist is free after the filters (their last read was before a workgroupUniformLoad).
  hist[l].x = all;
  workgroupBarrier();
  let r = philox(vec4u(steps[p.baseStep + b], seqIds[p.baseSeq + b], 0u, 0u), vec2u(p.seedLo, p.seedHi));
  let u = f32(r.x >> 8u) * (1.0 / 16777216.0);
  if (l == 0u) {
    var total = 0.0;
    var totalAll = 0.0;
    for (var m = 0u; m < p.lanes; m++) {
      total += laneF[m];
      totalAll += hist[m].x;
    }
    let aim = u * total;
    // The lane holding the aim: the last non-empty lane whose prefix is ≤ aim.
    var chosen = NONE;
    var start = 0.0;
    var prefix = 0.0;
    for (var m = 0u; m < p.lanes; m++) {
      let v = laneF[m];
      if (v > 0.0 && prefix <= aim) { chosen = m; start = prefix; }
      prefix += v;
    }
    decision = Decision(chosen, start, aim, totalAll);
  }
  let dec = workgroupUniformLoad(&decision);
  let logTotal = log(dec.all);
  if (dec.id == NONE) {
    if (l == 0u) {
      outIds[p.baseOut + b] = best;
      if (p.wantLogprob != 0u) { outLogprob[p.baseLogprob + b] = -logTotal; }
    }
    return;
  }
  if (l == dec.id) {
    var run = dec.acc;
    var pick = NONE;
    var last = NONE;
    for (var i = i0; i < i1; i++) {
      let x = logits[row + i];
      if (orderKey(x) >= thr) {
        let w = exp((x - M) / p.temperature);
        if (w > 0.0) {
          last = i;
          run += w;
          if (run > dec.goal) { pick = i; break; }
        }
      }
    }
    // Rounding can leave the aim just past this lane's running sum: take its last kept token.
    if (pick == NONE) { pick = last; }
    outIds[p.baseOut + b] = pick;
    if (p.wantLogprob != 0u) { outLogprob[p.baseLogprob + b] = (logits[row + pick] - M) / p.temperature - logTotal; }
  }
}
