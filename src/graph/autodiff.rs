//! Reverse-mode autodiff as a graph-to-graph transform: each op appends the nodes of its own
//! backward, and a tensor used by several ops receives the sum of their gradients.

use super::{Graph, NodeKind, TensorId};
use crate::ops::numel;
use crate::{Error, Result};

pub fn grad(g: &mut Graph, loss: TensorId, wrt: &[TensorId]) -> Result<Vec<TensorId>> {
    if numel(g.shape(loss)) != 1 {
        return Err(Error::Graph(format!(
            "gradients need a scalar loss, '{}' has shape {:?}",
            g.node(loss).name,
            g.shape(loss)
        )));
    }
    let forward_len = loss.0 + 1;

    // A node needs a gradient when it is one of `wrt` or depends on one of them.
    let mut needs = vec![false; forward_len];
    for &w in wrt {
        if w.0 < forward_len {
            needs[w.0] = true;
        }
    }
    for i in 0..forward_len {
        if g.nodes[i].inputs().iter().any(|t| needs[t.0]) {
            needs[i] = true;
        }
    }

    let mut grads: Vec<Option<TensorId>> = vec![None; forward_len];
    let loss_shape = g.shape(loss).to_vec();
    let seed = g.constant(&loss_shape, vec![1.0]);
    grads[loss.0] = Some(seed);

    for i in (0..forward_len).rev() {
        let Some(dy) = grads[i] else { continue };
        let NodeKind::Op { op, inputs } = g.nodes[i].kind.clone() else {
            continue;
        };
        let input_needs: Vec<bool> = inputs.iter().map(|t| needs[t.0]).collect();
        if !input_needs.iter().any(|&n| n) {
            continue;
        }
        let input_grads = op.backward(g, &inputs, TensorId(i), dy, &input_needs);
        for (x, dx) in inputs.iter().zip(input_grads) {
            let Some(dx) = dx else { continue };
            debug_assert_eq!(g.shape(dx), g.shape(*x), "gradient shape of {}", op.name());
            grads[x.0] = Some(match grads[x.0] {
                Some(acc) => g.add(acc, dx),
                None => dx,
            });
        }
    }

    Ok(wrt
        .iter()
        .map(|&w| match grads.get(w.0).copied().flatten() {
            Some(d) => d,
            // The loss does not depend on w: its gradient is zero.
            None => {
                let shape = g.shape(w).to_vec();
                g.constant(&shape, vec![0.0; numel(&shape)])
            }
        })
        .collect())
}
