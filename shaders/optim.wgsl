// optim: LARS and the target network's EMA, in place, with the step's learning rate and tau
// read from a small schedule buffer (so schedules change without new pipelines).
// Bindings: 0 params {n, excluded, clip, momentum, weight_decay, eta}, 1 w (the parameter; for
// apply_update the momentum buffer, for ema_target the online parameter), 2 g (gradient),
// 3 norms ([sum w^2, sum u^2, sum g^2]) or the schedule ([lr, tau]), 4 out (updated in place: the
// momentum buffer, or the parameter), 5 the schedule (lars_momentum only).
// squared_norms: one workgroup of 256 over the tensor, each lane's run summed by cascade.wgsl
// (prepended); dispatch (1, 1, 1).
// Others: one invocation per element; dispatch grid_1d(ceil(n / 256)), linear workgroup index
// wid.x + wid.y * num_workgroups.x.

struct Params {
    n: u32,
    // 1 for biases and batch-norm parameters: no weight decay, no trust ratio.
    excluded: u32,
    // 1: the trust ratio is capped at 1 / lr (no tensor's rate above lr; 1 at lr 0).
    clip: u32,
    _pad1: u32,
    momentum: f32,
    weight_decay: f32,
    eta: f32,
    _pad2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> schedule: array<f32>;

var<workgroup> partial: array<vec3<f32>, 256>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid.x;
}

// out = [sum w^2, sum u^2, sum g^2] with u = g + weight_decay * w.
@compute @workgroup_size(256, 1, 1)
fn squared_norms(@builtin(local_invocation_id) lid: vec3<u32>) {
    var ww = cascade_new();
    var uu = cascade_new();
    var gg = cascade_new();
    for (var i = lid.x; i < p.n; i += 256u) {
        let u = g[i] + p.weight_decay * w[i];
        cascade_add(&ww, w[i] * w[i]);
        cascade_add(&uu, u * u);
        cascade_add(&gg, g[i] * g[i]);
    }
    partial[lid.x] = vec3<f32>(cascade_total(ww), cascade_total(uu), cascade_total(gg));
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid.x < stride) {
            partial[lid.x] += partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        out[0] = partial[0].x;
        out[1] = partial[0].y;
        out[2] = partial[0].z;
    }
}

// The momentum buffer `out` <- momentum * out + u, with u = (g + wd w) * eta ||w|| / ||u||
// (factor 1 where either norm is zero; with clip at most 1 / lr), or u = g for excluded
// tensors; aux holds the norms.
@compute @workgroup_size(256, 1, 1)
fn lars_momentum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    var u = g[i];
    if (p.excluded == 0u) {
        u += p.weight_decay * w[i];
        let wn = sqrt(aux[0]);
        let un = sqrt(aux[1]);
        if (wn > 0.0 && un > 0.0) {
            var ratio = p.eta * wn / un;
            if (p.clip == 1u) {
                let lr = schedule[0];
                ratio = select(1.0, min(ratio / lr, 1.0), lr > 0.0);
            }
            u *= ratio;
        }
    }
    out[i] = p.momentum * out[i] + u;
}

// The parameter `out` <- out - lr * w, where w binds the momentum buffer and aux the schedule.
@compute @workgroup_size(256, 1, 1)
fn apply_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = out[i] - aux[0] * w[i];
    }
}

// The target parameter `out` <- tau out + (1 - tau) w, w binding the online parameter and
// aux the schedule ([lr, tau]).
@compute @workgroup_size(256, 1, 1)
fn ema_target(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        let tau = aux[1];
        out[i] = tau * out[i] + (1.0 - tau) * w[i];
    }
}
