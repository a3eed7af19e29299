// The angle reduction RoPE's kernels share (shaders/rope.wgsl, shaders/rope_append.wgsl: src/gpu/shaders.ts puts this
// file in front of each): WGSL bounds the error of cos/sin only inside [−π, π], and positions reach 10⁵, so an angle is
// reduced explicitly first (Cody–Waite). Both kernels must rotate bit for bit alike: a decode step's keys are compared
// with the training forward's.
// 2π = C1 + C2 + C3; C1 and C2 have few significant bits so k·C1 and k·C2 are exact for k < 2^16.
const C1 = 6.28125;
const C2 = 0.0019378662109375;
const C3 = -2.559031372584286e-06;
const INV_TWO_PI = 0.15915494309189535;

fn reduceAngle(a: f32) -> f32 {
  let n = round(a * INV_TWO_PI);
  return ((a - n * C1) - n * C2) - n * C3;
}
