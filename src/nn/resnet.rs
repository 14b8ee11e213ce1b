//! ResNet v1 (post-activation) as torchvision builds it: basic or bottleneck blocks with the
//! stride on the 3x3 convolution, a free base width, 1 or 3 input channels, and either the
//! ImageNet stem (7x7 stride 2 + 3x3 max pool) or the small-image stem (3x3 stride 1, no pool).
//! The fc layer is left out: the output is the global average pool, [N, out_dim].

use super::layers::Layers;
use super::weights::Weights;
use crate::graph::{Graph, TensorId};
use crate::ops::MaxPool2d;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Block {
    Basic,
    Bottleneck,
}

impl Block {
    pub fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3x3 stride 1, no max pool: for 28-32 px images.
    Small,
    /// 7x7 stride 2 and a 3x3 stride 2 max pool.
    Imagenet,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResNetConfig {
    pub block: Block,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Planes of the first stage (64 in torchvision; 64 x the width multiplier in BYOL's wide nets).
    pub width: usize,
    pub in_channels: usize,
    pub stem: Stem,
}

impl ResNetConfig {
    /// torchvision's ResNet of this depth, with every width scaled by `multiplier`.
    pub fn of_depth(
        depth: usize,
        multiplier: usize,
        in_channels: usize,
        stem: Stem,
    ) -> Result<Self> {
        let (block, layers) = match depth {
            18 => (Block::Basic, [2, 2, 2, 2]),
            34 => (Block::Basic, [3, 4, 6, 3]),
            50 => (Block::Bottleneck, [3, 4, 6, 3]),
            101 => (Block::Bottleneck, [3, 4, 23, 3]),
            152 => (Block::Bottleneck, [3, 8, 36, 3]),
            200 => (Block::Bottleneck, [3, 24, 36, 3]),
            _ => {
                return Err(Error::Graph(format!(
                    "no ResNet of depth {depth}: use 18, 34, 50, 101, 152 or 200"
                )))
            }
        };
        Ok(Self {
            block,
            layers,
            width: 64 * multiplier,
            in_channels,
            stem,
        })
    }

    /// Channels of the representation: the last stage's output.
    pub fn out_dim(&self) -> usize {
        self.width * 8 * self.block.expansion()
    }

    /// Appends the encoder applied to `x` [N, C, H, W]; returns the pooled features [N, out_dim].
    pub fn build(&self, l: &mut Layers, x: TensorId) -> TensorId {
        let mut h = match self.stem {
            Stem::Small => l.conv("conv1", x, self.width, 3, 1, 1),
            Stem::Imagenet => l.conv("conv1", x, self.width, 7, 2, 3),
        };
        h = l.batch_norm_relu("bn1", h);
        if self.stem == Stem::Imagenet {
            h = l.graph.apply(
                MaxPool2d {
                    k: 3,
                    stride: 2,
                    pad: 1,
                },
                &[h],
            );
        }
        let mut inplanes = self.width;
        for (stage, &blocks) in self.layers.iter().enumerate() {
            let planes = self.width << stage;
            for i in 0..blocks {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let name = format!("layer{}.{i}", stage + 1);
                h = self.block_forward(l, &name, h, inplanes, planes, stride);
                inplanes = planes * self.block.expansion();
            }
        }
        let s = l.graph.shape(h).to_vec();
        let flat = l.graph.reshape(h, &[s[0], s[1], s[2] * s[3]]);
        l.graph.mean(flat, 2)
    }

    fn block_forward(
        &self,
        l: &mut Layers,
        name: &str,
        x: TensorId,
        inplanes: usize,
        planes: usize,
        stride: usize,
    ) -> TensorId {
        let out_planes = planes * self.block.expansion();
        let identity = if stride != 1 || inplanes != out_planes {
            let d = l.conv(&format!("{name}.downsample.0"), x, out_planes, 1, stride, 0);
            l.batch_norm(&format!("{name}.downsample.1"), d)
        } else {
            x
        };
        // The last batch norm of the block takes the residual add and the ReLU into its kernel.
        match self.block {
            Block::Basic => {
                let h = l.conv(&format!("{name}.conv1"), x, planes, 3, stride, 1);
                let h = l.batch_norm_relu(&format!("{name}.bn1"), h);
                let h = l.conv(&format!("{name}.conv2"), h, planes, 3, 1, 1);
                l.batch_norm_add_relu(&format!("{name}.bn2"), h, identity)
            }
            Block::Bottleneck => {
                let h = l.conv(&format!("{name}.conv1"), x, planes, 1, 1, 0);
                let h = l.batch_norm_relu(&format!("{name}.bn1"), h);
                let h = l.conv(&format!("{name}.conv2"), h, planes, 3, stride, 1);
                let h = l.batch_norm_relu(&format!("{name}.bn2"), h);
                let h = l.conv(&format!("{name}.conv3"), h, out_planes, 1, 1, 0);
                l.batch_norm_add_relu(&format!("{name}.bn3"), h, identity)
            }
        }
    }

    /// Every parameter's name (without prefix) and shape, in build order.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut g = Graph::new();
        let x = g.input("x", &[1, self.in_channels, 64, 64]);
        let mut l = Layers::new(&mut g, super::Mode::Eval, "");
        self.build(&mut l, x);
        l.params.into_iter().map(|p| (p.name, p.shape)).collect()
    }

    /// The architecture that the keys under `prefix` describe (torchvision names), checked
    /// against every tensor there: `fc.*` and `*.num_batches_tracked` are ignored.
    pub fn infer(weights: &Weights, prefix: &str) -> Result<Self> {
        let invalid = |msg: String| Error::File {
            path: weights.path.clone(),
            msg: format!(
                "not a torchvision ResNet{}: {msg}",
                if prefix.is_empty() {
                    String::new()
                } else {
                    format!(" under '{prefix}'")
                }
            ),
        };
        let stem_shape = weights
            .shape(&format!("{prefix}conv1.weight"))
            .ok_or_else(|| invalid("no conv1.weight".into()))?;
        let &[width, in_channels, k, k2] = stem_shape else {
            return Err(invalid(format!("conv1.weight has shape {stem_shape:?}")));
        };
        let stem = match (k, k2) {
            (3, 3) => Stem::Small,
            (7, 7) => Stem::Imagenet,
            _ => {
                return Err(invalid(format!(
                    "a {k}x{k2} stem is neither the small (3x3) nor the ImageNet (7x7) one"
                )))
            }
        };
        let block = if weights
            .shape(&format!("{prefix}layer1.0.conv3.weight"))
            .is_some()
        {
            Block::Bottleneck
        } else {
            Block::Basic
        };
        let mut layers = [0; 4];
        for (stage, n) in layers.iter_mut().enumerate() {
            while weights
                .shape(&format!("{prefix}layer{}.{}.conv1.weight", stage + 1, *n))
                .is_some()
            {
                *n += 1;
            }
            if *n == 0 {
                return Err(invalid(format!("no blocks in layer{}", stage + 1)));
            }
        }
        let config = Self {
            block,
            layers,
            width,
            in_channels,
            stem,
        };
        let expected = config.param_shapes();
        for (name, shape) in &expected {
            match weights.shape(&format!("{prefix}{name}")) {
                None => return Err(invalid(format!("'{name}' is missing"))),
                Some(s) if s != shape.as_slice() => {
                    return Err(invalid(format!(
                        "'{name}' has shape {s:?}, expected {shape:?}"
                    )))
                }
                Some(_) => {}
            }
        }
        for key in weights.names() {
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            let known = expected.iter().any(|(n, _)| n == rest)
                || rest.starts_with("fc.")
                || rest.ends_with("num_batches_tracked");
            if !known {
                return Err(invalid(format!("unexpected tensor '{rest}'")));
            }
        }
        Ok(config)
    }
}
