// fma_peak: the adapter's FMA-bound throughput, the roof of the roofline.
// Each invocation runs ITERS rounds of 8 independent vec4 FMA chains (64 flops a round) and
// writes one float so the work cannot be dropped.
// Bindings: 0 params {iters}, 1 out (one float per invocation).
// Dispatch: (groups, 1, 1) of 256 invocations.

struct Params {
    iters: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let seed = f32(gid.x) * 1e-7;
    let x = vec4<f32>(0.999, 0.998, 0.997, 0.996);
    let y = vec4<f32>(seed, 0.001, 0.002, 0.003);
    var a0 = vec4<f32>(seed);
    var a1 = a0 + 0.1;
    var a2 = a0 + 0.2;
    var a3 = a0 + 0.3;
    var a4 = a0 + 0.4;
    var a5 = a0 + 0.5;
    var a6 = a0 + 0.6;
    var a7 = a0 + 0.7;
    for (var i = 0u; i < p.iters; i++) {
        a0 = fma(a0, x, y);
        a1 = fma(a1, x, y);
        a2 = fma(a2, x, y);
        a3 = fma(a3, x, y);
        a4 = fma(a4, x, y);
        a5 = fma(a5, x, y);
        a6 = fma(a6, x, y);
        a7 = fma(a7, x, y);
    }
    let s = (a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7);
    out[gid.x] = s.x + s.y + s.z + s.w;
}
