// cascade: a running sum whose rounding error does not grow with the number of terms.
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
