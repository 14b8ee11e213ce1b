// stats: summaries of a [rows, cols] matrix for the training metrics.
// Bindings: 0 params {rows, cols}, 1 x, 4 out.
// column_std_mean: one workgroup of 256; dispatch (1, 1, 1). Lanes own columns.

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

// out[0] = the mean over columns of each column's standard deviation over the rows (unbiased,
// as torch.std): the collapse monitor on L2-normalised projections.
@compute @workgroup_size(256, 1, 1)
fn column_std_mean(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = 0.0;
    let n = f32(p.rows);
    for (var j = lid.x; j < p.cols; j += 256u) {
        var mean = 0.0;
        for (var i = 0u; i < p.rows; i++) {
            mean += x[i * p.cols + j];
        }
        mean /= n;
        var ss = 0.0;
        for (var i = 0u; i < p.rows; i++) {
            let d = x[i * p.cols + j] - mean;
            ss += d * d;
        }
        acc += sqrt(ss / max(n - 1.0, 1.0));
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid.x < stride) {
            partial[lid.x] += partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        out[0] = partial[0] / f32(p.cols);
    }
}
