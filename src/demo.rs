//! A two-layer MLP fitted to a fixed regression problem with plain SGD: the smallest whole
//! training loop (forward, autodiff, update, all in one submission), used by `byol demo` and
//! by the executor's end-to-end test against the CPU reference.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::graph::{Graph, TensorId};

pub struct MlpRegression {
    pub graph: Graph,
    pub x: TensorId,
    pub target: TensorId,
    /// w1 [in, hidden], b1 [hidden], w2 [hidden, out], b2 [out].
    pub params: Vec<TensorId>,
    pub loss: TensorId,
}

/// Sizes of the problem.
#[derive(Debug, Clone, Copy)]
pub struct MlpShape {
    pub batch: usize,
    pub inputs: usize,
    pub hidden: usize,
    pub outputs: usize,
}

impl MlpRegression {
    /// loss = mean over rows of sum over columns of (relu(x w1 + b1) w2 + b2 - target)^2,
    /// followed by one SGD step on every parameter.
    pub fn build(s: MlpShape, lr: f32) -> Self {
        let mut g = Graph::new();
        let x = g.input("x", &[s.batch, s.inputs]);
        let target = g.input("target", &[s.batch, s.outputs]);
        let w1 = g.param("w1", &[s.inputs, s.hidden]);
        let b1 = g.param("b1", &[s.hidden]);
        let w2 = g.param("w2", &[s.hidden, s.outputs]);
        let b2 = g.param("b2", &[s.outputs]);
        let h = g.matmul(x, w1);
        let h = g.bias_add(h, b1);
        let h = g.relu(h);
        let y = g.matmul(h, w2);
        let y = g.bias_add(y, b2);
        let neg = g.scale(target, -1.0);
        let err = g.add(y, neg);
        let sq = g.mul(err, err);
        let per_row = g.sum(sq, 1);
        let loss = g.mean(per_row, 0);
        let params = vec![w1, b1, w2, b2];
        let grads = g.grad(loss, &params).expect("scalar loss");
        for (&p, &d) in params.iter().zip(&grads) {
            g.sgd_update(p, d, lr);
        }
        Self {
            graph: g,
            x,
            target,
            params,
            loss,
        }
    }

    /// Initial parameters (uniform, scaled by fan-in) and a fixed data set whose targets a
    /// hidden teacher network of the same shape produces.
    pub fn data(&self, seed: u64) -> (Vec<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw = |shape: &[usize], scale: f32| -> Vec<f32> {
            (0..shape.iter().product::<usize>())
                .map(|_| rng.random_range(-1.0..1.0f32) * scale)
                .collect()
        };
        let shapes: Vec<Vec<usize>> = self
            .params
            .iter()
            .map(|&p| self.graph.shape(p).to_vec())
            .collect();
        let fan_in = |s: &[usize]| 1.0 / (s[0] as f32).sqrt();
        let init: Vec<Vec<f32>> = shapes
            .iter()
            .map(|s| draw(s, if s.len() == 2 { fan_in(s) } else { 0.1 }))
            .collect();
        let x = draw(self.graph.shape(self.x), 1.0);
        let teacher: Vec<Vec<f32>> = shapes
            .iter()
            .map(|s| draw(s, if s.len() == 2 { 2.0 * fan_in(s) } else { 0.5 }))
            .collect();
        let target = teacher_forward(&x, &teacher, &shapes);
        (init, x, target)
    }
}

/// The teacher's outputs, computed on the host.
fn teacher_forward(x: &[f32], w: &[Vec<f32>], shapes: &[Vec<usize>]) -> Vec<f32> {
    let (inputs, hidden, outputs) = (shapes[0][0], shapes[0][1], shapes[2][1]);
    let batch = x.len() / inputs;
    let mut y = vec![0.0f32; batch * outputs];
    for r in 0..batch {
        let h: Vec<f32> = (0..hidden)
            .map(|j| {
                (0..inputs)
                    .map(|i| x[r * inputs + i] * w[0][i * hidden + j])
                    .sum::<f32>()
                    + w[1][j]
            })
            .map(|v| v.max(0.0))
            .collect();
        for o in 0..outputs {
            y[r * outputs + o] = (0..hidden)
                .map(|j| h[j] * w[2][j * outputs + o])
                .sum::<f32>()
                + w[3][o];
        }
    }
    y
}
