// batchnorm: per-channel statistics and the batch-norm transform over x viewed as [N, C, S]
// (S = H*W for images, 1 for [N, C] features); element (n, c, s) is at (n * C + c) * S + s.
// M = N * S elements per channel.
// Bindings: 0 params {batch, channels, spatial, flags, eps, scale}, 1..5 and 7..8 inputs as each
// entry names them, 6 out.
// batchnorm_vec4.wgsl has the training kernels again for S a multiple of 4; these serve the
// other shapes ([N, C] features, odd planes such as 7x7) and inference.
// Reductions (channel_*): one workgroup of 256 per channel, each lane's run summed by
// cascade.wgsl (prepended), then a tree over the lanes; dispatch grid_1d(C). For [N, C]
// features (S = 1) the *_columns entries instead give each lane a channel, whose column it
// sums down alone; dispatch grid_1d(ceil(C / 256)).
// Pointwise entries: one invocation per element of out; dispatch grid_1d(ceil(len / 256)). Those
// that read several per-channel values (bn_apply, bn_batch_stats_grad) compute `run` (in
// params) consecutive elements each and read them again only where the run crosses into the
// next channel: on software adapters every storage load costs a loop over the lanes, and the
// per-channel loads dominated those kernels. Dispatch grid_1d(ceil(len / (256 run))).
// The linear workgroup index is wid.x + wid.y * num_workgroups.x.

struct Params {
    batch: u32,
    channels: u32,
    spatial: u32,
    flags: u32,
    eps: f32,
    scale: f32,
    run: u32,
    _pad2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in1: array<f32>;
@group(0) @binding(2) var<storage, read> in2: array<f32>;
@group(0) @binding(3) var<storage, read> in3: array<f32>;
@group(0) @binding(4) var<storage, read> in4: array<f32>;
@group(0) @binding(5) var<storage, read> in5: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read> in6: array<f32>;
@group(0) @binding(8) var<storage, read> in7: array<f32>;

// flags of bn_apply: ReLU after the transform, and the residual in6 added before it.
const RELU: u32 = 1u;
const ADD: u32 = 2u;
// flags of the gradient kernels: dy is masked by the ReLU's output (dy where it is > 0).
const MASKED: u32 = 1u;

var<workgroup> partial: array<vec2<f32>, 256>;

fn linear(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

fn channel_of(i: u32) -> u32 {
    return (i / p.spatial) % p.channels;
}

fn inv_std(c: u32, var_: f32) -> f32 {
    return inverseSqrt(var_ + p.eps);
}

// Sums partial[] over the workgroup into partial[0].
fn reduce_partial(lid: u32) {
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
}

// out[c] = scale * sum of in1 over the channel.
@compute @workgroup_size(256, 1, 1)
fn channel_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = linear(wid, nwg);
    let m = p.batch * p.spatial;
    var acc = cascade_new();
    if (c < p.channels) {
        var walk = channel_walk(c, lid.x, p.channels, p.spatial);
        for (var i = lid.x; i < m; i += 256u) {
            cascade_add(&acc, in1[walk.e]);
            walk_step(&walk);
        }
    }
    partial[lid.x] = vec2<f32>(cascade_total(acc), 0.0);
    reduce_partial(lid.x);
    if (lid.x == 0u && c < p.channels) {
        out[c] = p.scale * partial[0].x;
    }
}

// out[c] = the mean of in1 over the channel, out[C + c] = scale * the sum of its squared
// deviations (the biased variance when scale = 1/M), in one pass: each lane sums its run about
// its first element, and the lanes' moments merge (cascade.wgsl).
@compute @workgroup_size(256, 1, 1)
fn channel_moments(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = linear(wid, nwg);
    let m = p.batch * p.spatial;
    var s1 = cascade_new();
    var s2 = cascade_new();
    var shift = 0.0;
    if (c < p.channels && lid.x < m) {
        var walk = channel_walk(c, lid.x, p.channels, p.spatial);
        shift = in1[walk.e];
        for (var i = lid.x; i < m; i += 256u) {
            let d = in1[walk.e] - shift;
            cascade_add(&s1, d);
            cascade_add(&s2, d * d);
            walk_step(&walk);
        }
    }
    moments[lid.x] = moments_from_shifted(f32(s1.n), shift, cascade_total(s1), cascade_total(s2));
    reduce_moments(lid.x);
    if (lid.x == 0u && c < p.channels) {
        out[c] = moments[0].y;
        out[p.channels + c] = p.scale * moments[0].z;
    }
}

// out[c] = sum of in1 * (in2 - in3[c]) / sqrt(in4[c] + eps): dy against the normalised x.
@compute @workgroup_size(256, 1, 1)
fn channel_dot_normalized(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = linear(wid, nwg);
    let m = p.batch * p.spatial;
    var acc = cascade_new();
    var istd = 0.0;
    if (c < p.channels) {
        let mean = in3[c];
        istd = inv_std(c, in4[c]);
        var walk = channel_walk(c, lid.x, p.channels, p.spatial);
        for (var i = lid.x; i < m; i += 256u) {
            let e = walk.e;
            cascade_add(&acc, in1[e] * (in2[e] - mean));
            walk_step(&walk);
        }
    }
    partial[lid.x] = vec2<f32>(cascade_total(acc), 0.0);
    reduce_partial(lid.x);
    if (lid.x == 0u && c < p.channels) {
        out[c] = partial[0].x * istd;
    }
}

fn pointwise_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return linear(wid, nwg) * 256u + lid.x;
}

// Where a run starts: its element index, channel and position within the channel's plane.
struct RunStart {
    first: u32,
    c: u32,
    s: u32,
}

fn run_start(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> RunStart {
    let first = pointwise_index(wid, nwg, lid) * p.run;
    let plane = first / p.spatial;
    return RunStart(first, plane % p.channels, first - plane * p.spatial);
}

// Moves a run's channel c and position s to its j-th element (s counts the elements already
// done): true where j starts the run or a new channel, whose values must then be read.
fn enters_channel(j: u32, c: ptr<function, u32>, s: ptr<function, u32>) -> bool {
    if (j == 0u) {
        return true;
    }
    if (*s == p.spatial) {
        *s = 0u;
        *c = (*c + 1u) % p.channels;
        return true;
    }
    return false;
}

// out = (in1 - in2[c]) / sqrt(in3[c] + eps) * in4[c] + in5[c]: x, mean, var, gamma, beta; then
// + in6 (the residual) with ADD, and max(., 0) with RELU. `run` elements per invocation.
@compute @workgroup_size(256, 1, 1)
fn bn_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let start = run_start(wid, nwg, lid);
    let len = p.batch * p.channels * p.spatial;
    var c = start.c;
    var s = start.s;
    var mean = 0.0;
    var scale = 0.0;
    var shift = 0.0;
    for (var j = 0u; j < p.run && start.first + j < len; j++) {
        if (enters_channel(j, &c, &s)) {
            mean = in2[c];
            scale = inv_std(c, in3[c]) * in4[c];
            shift = in5[c];
        }
        let i = start.first + j;
        var y = (in1[i] - mean) * scale + shift;
        if ((p.flags & ADD) != 0u) {
            y += in6[i];
        }
        if ((p.flags & RELU) != 0u) {
            y = max(y, 0.0);
        }
        out[i] = y;
        s += 1u;
    }
}

// out = in1 * in3[c] / sqrt(in2[c] + eps): dy, var, gamma -> the direct part of dx.
@compute @workgroup_size(256, 1, 1)
fn bn_scale_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = pointwise_index(wid, nwg, lid);
    if (i < p.batch * p.channels * p.spatial) {
        let c = channel_of(i);
        out[i] = in1[i] * in3[c] * inv_std(c, in2[c]);
    }
}

// out = scale * in1[c]: a per-channel value spread over the channel's elements.
@compute @workgroup_size(256, 1, 1)
fn channel_broadcast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = pointwise_index(wid, nwg, lid);
    if (i < p.batch * p.channels * p.spatial) {
        out[i] = p.scale * in1[channel_of(i)];
    }
}

// dy (in1) where the ReLU's output in7 is positive (MASKED), else dy itself.
fn masked_dy(i: u32) -> f32 {
    if ((p.flags & MASKED) != 0u && in7[i] <= 0.0) {
        return 0.0;
    }
    return in1[i];
}

// out[c] = sum of dy and out[C + c] = sum of dy x_hat over the channel, in one pass: in1 = dy,
// in2 = x, in3 = mean, in4 = var, in7 = the ReLU's output (MASKED).
@compute @workgroup_size(256, 1, 1)
fn bn_grad_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = linear(wid, nwg);
    let m = p.batch * p.spatial;
    var sum = cascade_new();
    var dot = cascade_new();
    var istd = 0.0;
    if (c < p.channels) {
        let mean = in3[c];
        istd = inv_std(c, in4[c]);
        var walk = channel_walk(c, lid.x, p.channels, p.spatial);
        for (var i = lid.x; i < m; i += 256u) {
            let e = walk.e;
            walk_step(&walk);
            let dy = masked_dy(e);
            cascade_add(&sum, dy);
            cascade_add(&dot, dy * (in2[e] - mean));
        }
    }
    partial[lid.x] = vec2<f32>(cascade_total(sum), cascade_total(dot));
    reduce_partial(lid.x);
    if (lid.x == 0u && c < p.channels) {
        out[c] = partial[0].x;
        out[p.channels + c] = partial[0].y * istd;
    }
}

// dx of batch norm with batch statistics, scale = 1/M: in1 = dy, in2 = x, in3 = mean, in4 = var,
// in5 = gamma, in6 = the sums of bn_grad_sums, in7 = the ReLU's output (MASKED) ->
// gamma istd (dy - sum(dy) / M - x_hat sum(dy x_hat) / M).
// `run` elements per invocation.
@compute @workgroup_size(256, 1, 1)
fn bn_batch_stats_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let start = run_start(wid, nwg, lid);
    let len = p.batch * p.channels * p.spatial;
    var c = start.c;
    var s = start.s;
    var mean = 0.0;
    var istd = 0.0;
    var gain = 0.0;
    var mean_dy = 0.0;
    var mean_dot = 0.0;
    for (var j = 0u; j < p.run && start.first + j < len; j++) {
        if (enters_channel(j, &c, &s)) {
            mean = in3[c];
            istd = inv_std(c, in4[c]);
            gain = in5[c] * istd;
            mean_dy = p.scale * in6[c];
            mean_dot = p.scale * in6[p.channels + c];
        }
        let i = start.first + j;
        let x_hat = (in2[i] - mean) * istd;
        out[i] = gain * (masked_dy(i) - mean_dy - x_hat * mean_dot);
        s += 1u;
    }
}

// Per channel (spatial = batch = 1): in1 = sum(dy), in2 = gamma, in3 = var -> d mean = -gamma istd sum(dy).
@compute @workgroup_size(256, 1, 1)
fn bn_grad_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = pointwise_index(wid, nwg, lid);
    if (c < p.channels) {
        out[c] = -in2[c] * inv_std(c, in3[c]) * in1[c];
    }
}

// Per channel: in1 = sum(dy * x_hat), in2 = gamma, in3 = var -> d var = -gamma istd^2 sum(dy x_hat) / 2.
@compute @workgroup_size(256, 1, 1)
fn bn_grad_var(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = pointwise_index(wid, nwg, lid);
    if (c < p.channels) {
        let istd = inv_std(c, in3[c]);
        out[c] = -0.5 * in2[c] * istd * istd * in1[c];
    }
}

// The lane's channel in the *_columns entries, and the column's length.
fn column(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return linear(wid, nwg) * 256u + lid.x;
}

// channel_sum for S = 1.
@compute @workgroup_size(256, 1, 1)
fn channel_sum_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = column(wid, nwg, lid);
    if (c < p.channels) {
        var acc = cascade_new();
        for (var n = 0u; n < p.batch; n++) {
            cascade_add(&acc, in1[n * p.channels + c]);
        }
        out[c] = p.scale * cascade_total(acc);
    }
}

// channel_moments for S = 1: each lane sums its channel's column about the column's first
// element, 16 terms at a time into the totals (a column is a batch long: a term meets at most
// 16 + N / 16 additions). Not the cascade of the other kernels: with its two sums in one loop
// llvmpipe ran this kernel 50 times slower.
@compute @workgroup_size(256, 1, 1)
fn channel_moments_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = column(wid, nwg, lid);
    if (c < p.channels) {
        let shift = in1[c];
        var block = vec2<f32>();
        var total = vec2<f32>();
        for (var n = 0u; n < p.batch; n++) {
            let d = in1[n * p.channels + c] - shift;
            block += vec2<f32>(d, d * d);
            if ((n & 15u) == 15u) {
                total += block;
                block = vec2<f32>();
            }
        }
        total += block;
        let m = moments_from_shifted(f32(p.batch), shift, total.x, total.y);
        out[c] = m.y;
        out[p.channels + c] = p.scale * m.z;
    }
}

// bn_grad_sums for S = 1.
@compute @workgroup_size(256, 1, 1)
fn bn_grad_sums_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = column(wid, nwg, lid);
    if (c < p.channels) {
        let mean = in3[c];
        var sum = cascade_new();
        var dot = cascade_new();
        for (var n = 0u; n < p.batch; n++) {
            let e = n * p.channels + c;
            let dy = masked_dy(e);
            cascade_add(&sum, dy);
            cascade_add(&dot, dy * (in2[e] - mean));
        }
        out[c] = cascade_total(sum);
        out[p.channels + c] = cascade_total(dot) * inv_std(c, in4[c]);
    }
}
