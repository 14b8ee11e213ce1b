// bandwidth_peak: the adapter's copy throughput, the roof of memory-bound kernels.
// Each invocation copies one vec4 of src to dst.
// Bindings: 0 params {len4: vec4s to copy}, 1 src, 2 dst.
// Dispatch: grid_1d(ceil(len4 / 256)); the linear workgroup index is wid.x + wid.y * num_workgroups.x.

struct Params {
    len4: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if (i < p.len4) {
        dst[i] = src[i];
    }
}
