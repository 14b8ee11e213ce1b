// cascade: a running sum whose rounding error does not grow with the number of terms, the
// merge of the mean and variance of two sets (the one-pass batch statistics), and a reducing
// lane's walk over one channel.
// Terms add into a block of 16, full blocks into a block of 256, those into one of 4096, and
// those into the total: a term meets at most 16 + 16 + 16 + n / 4096 additions, where a plain
// running sum of n terms meets n. Prepended to the shaders that reduce long runs (batchnorm,
// reduce, optim); no bindings of its own.

struct Cascade {
    s0: f32,
    s1: f32,
    s2: f32,
    s3: f32,
    n: u32,
}

fn cascade_new() -> Cascade {
    return Cascade(0.0, 0.0, 0.0, 0.0, 0u);
}

fn cascade_add(c: ptr<function, Cascade>, x: f32) {
    (*c).s0 += x;
    (*c).n += 1u;
    if (((*c).n & 15u) == 0u) {
        (*c).s1 += (*c).s0;
        (*c).s0 = 0.0;
        if (((*c).n & 255u) == 0u) {
            (*c).s2 += (*c).s1;
            (*c).s1 = 0.0;
            if (((*c).n & 4095u) == 0u) {
                (*c).s3 += (*c).s2;
                (*c).s2 = 0.0;
            }
        }
    }
}

fn cascade_total(c: Cascade) -> f32 {
    return c.s3 + (c.s2 + (c.s1 + c.s0));
}

// The same cascade over vec4 terms (four interleaved sums), totalled across its components.
struct Cascade4 {
    s0: vec4<f32>,
    s1: vec4<f32>,
    s2: vec4<f32>,
    s3: vec4<f32>,
    n: u32,
}

fn cascade4_new() -> Cascade4 {
    return Cascade4(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), 0u);
}

fn cascade4_add(c: ptr<function, Cascade4>, x: vec4<f32>) {
    (*c).s0 += x;
    (*c).n += 1u;
    if (((*c).n & 15u) == 0u) {
        (*c).s1 += (*c).s0;
        (*c).s0 = vec4<f32>(0.0);
        if (((*c).n & 255u) == 0u) {
            (*c).s2 += (*c).s1;
            (*c).s1 = vec4<f32>(0.0);
            if (((*c).n & 4095u) == 0u) {
                (*c).s3 += (*c).s2;
                (*c).s2 = vec4<f32>(0.0);
            }
        }
    }
}

fn cascade4_total(c: Cascade4) -> f32 {
    let t = c.s3 + (c.s2 + (c.s1 + c.s0));
    return (t.x + t.y) + (t.z + t.w);
}

// (count, mean, sum of squared deviations from the mean) of one set of values, merged with
// another's (Chan, Golub and LeVeque): exact in exact arithmetic, and no difference of large
// sums, so that a channel's variance needs one pass over it.
fn moments_merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    if (b.x == 0.0) {
        return a;
    }
    if (a.x == 0.0) {
        return b;
    }
    let n = a.x + b.x;
    let delta = b.y - a.y;
    return vec3<f32>(n, a.y + delta * (b.x / n), a.z + b.z + delta * delta * (a.x * (b.x / n)));
}

// The moments of n values from their sums s1 and s2 about a shift k close to them (one of the
// values: the squares' sum then cancels little).
fn moments_from_shifted(n: f32, k: f32, s1: f32, s2: f32) -> vec3<f32> {
    if (n == 0.0) {
        return vec3<f32>(0.0);
    }
    return vec3<f32>(n, k + s1 / n, max(s2 - s1 * (s1 / n), 0.0));
}

// One workgroup's lanes' moments (a workgroup of 256 per channel).
var<workgroup> moments: array<vec3<f32>, 256>;

// Merges moments[] over the workgroup into moments[0].
fn reduce_moments(lid: u32) {
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            moments[lid] = moments_merge(moments[lid], moments[lid + stride]);
        }
        workgroupBarrier();
    }
}

// A lane's walk over the elements of channel c of x viewed as [N, C, S] (elements, or vec4 of
// them), 256 apart in the channel's order (n, s): the index of each and its position in the
// plane, stepped without a division (llvmpipe runs a vector division as a scalar loop over
// the lanes). A step of 256 crosses `planes` whole planes of the channel and `ds` more.
struct ChannelWalk {
    e: u32,
    s: u32,
    de: u32,
    ds: u32,
    plane: u32,
    // From the end of the channel's plane in one image to its start in the next.
    skip: u32,
}

fn channel_walk(c: u32, j: u32, channels: u32, plane: u32) -> ChannelWalk {
    let n = j / plane;
    let s = j - n * plane;
    let planes = 256u / plane;
    let ds = 256u - planes * plane;
    let e = (n * channels + c) * plane + s;
    return ChannelWalk(e, s, planes * channels * plane + ds, ds, plane, (channels - 1u) * plane);
}

fn walk_step(w: ptr<function, ChannelWalk>) {
    (*w).e += (*w).de;
    (*w).s += (*w).ds;
    if ((*w).s >= (*w).plane) {
        (*w).s -= (*w).plane;
        (*w).e += (*w).skip;
    }
}
