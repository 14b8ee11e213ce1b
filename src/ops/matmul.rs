//! C = op(A) op(B) for 2-D matrices, op the identity or the transpose: every form backward needs.

use super::gemm_subgroup::{self, Accumulation, GemmKind, Tile};
use super::{numel, HostTensor, Op, Params, TensorRef, Work};
use crate::gpu::{Dispatch, Gpu, KernelKey};
use crate::graph::{Graph, TensorId};
use crate::Result;

#[derive(Debug, Clone, Copy, Default)]
pub struct MatMul {
    pub trans_a: bool,
    pub trans_b: bool,
}

/// The kernel variants (see the header of each shader, and `gemm_subgroup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKernel {
    /// Workgroup-memory tiles of 64x64: any shape; the choice for hardware GPUs' products too
    /// small to fill `TiledLarge`'s tiles (`fills_large_tiles`).
    Tiled,
    /// Double-buffered workgroup-memory tiles of 128x128, 8x8 outputs per invocation: any
    /// shape; the choice for hardware GPUs' large products.
    TiledLarge,
    /// Register blocks of 8x16 per invocation with vec4 loads: needs K and N (and M when A is
    /// transposed) divisible by 4; for software adapters without subgroups.
    Vec4,
    /// 64-row tiles per subgroup sharing A through broadcasts, same alignment as `Vec4`: the
    /// choice for software adapters with subgroups of a fixed size.
    Subgroup,
    /// The subgroup kernel on `Tile::in_order`, adding its products in K order as the tiled
    /// kernels do (`Accumulation::InOrder`); needs K and N divisible by 4 and A not transposed:
    /// a candidate hardware GPUs with subgroups of a fixed size time against the tiled kernels.
    SubgroupInOrder,
}

impl MatmulKernel {
    pub fn name(self) -> &'static str {
        match self {
            MatmulKernel::Tiled => "tiled",
            MatmulKernel::TiledLarge => "tiled-large",
            MatmulKernel::Vec4 => "vec4",
            MatmulKernel::Subgroup => "subgroup",
            MatmulKernel::SubgroupInOrder => "subgroup-in-order",
        }
    }

    /// Whether the adapter can run this variant at all.
    pub fn available(self, gpu: &Gpu) -> bool {
        match self {
            MatmulKernel::Tiled | MatmulKernel::TiledLarge | MatmulKernel::Vec4 => true,
            MatmulKernel::Subgroup => gpu
                .fixed_subgroup_size()
                .is_some_and(gemm_subgroup::supports_subgroup_size),
            MatmulKernel::SubgroupInOrder => gpu
                .fixed_subgroup_size()
                .is_some_and(gemm_subgroup::in_order_supports_subgroup_size),
        }
    }

    /// Whether this variant can compute the product of these sizes.
    pub fn supports(self, m: usize, n: usize, k: usize, trans_a: bool) -> bool {
        match self {
            MatmulKernel::Tiled | MatmulKernel::TiledLarge => true,
            MatmulKernel::Vec4 | MatmulKernel::Subgroup => {
                k.is_multiple_of(4) && n.is_multiple_of(4) && (!trans_a || m.is_multiple_of(4))
            }
            MatmulKernel::SubgroupInOrder => k.is_multiple_of(4) && n.is_multiple_of(4) && !trans_a,
        }
    }

    /// The variant for this adapter and these sizes.
    pub fn choose(gpu: &Gpu, m: usize, n: usize, k: usize, trans_a: bool) -> Self {
        if !gpu.is_cpu() {
            return if fills_large_tiles(m, n, 1) {
                Self::TiledLarge
            } else {
                Self::Tiled
            };
        }
        [Self::Subgroup, Self::Vec4]
            .into_iter()
            .find(|v| v.available(gpu) && v.supports(m, n, k, trans_a))
            .unwrap_or(Self::Tiled)
    }

    /// The variants that may compute this product on this adapter, `choose`'s first: on
    /// hardware GPUs both tiled families and, where it runs, `SubgroupInOrder`, which compute
    /// bit-identical results, for `Gpu::fastest` to time.
    pub fn candidates(gpu: &Gpu, m: usize, n: usize, k: usize, trans_a: bool) -> Vec<Self> {
        let mut candidates = match Self::choose(gpu, m, n, k, trans_a) {
            Self::Tiled => vec![Self::Tiled, Self::TiledLarge],
            Self::TiledLarge => vec![Self::TiledLarge, Self::Tiled],
            chosen => return vec![chosen],
        };
        let subgroup = Self::SubgroupInOrder;
        if subgroup.available(gpu) && subgroup.supports(m, n, k, trans_a) {
            candidates.push(subgroup);
        }
        candidates
    }

    /// The fastest of `candidates` for this product on this device (`Gpu::fastest`), timed on
    /// scratch buffers the sizes of `buffers`.
    pub fn fastest(
        gpu: &Gpu,
        candidates: &[Self],
        (a, b, c): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        (m, n, k): (usize, usize, usize),
        trans_a: bool,
        trans_b: bool,
    ) -> Result<Self> {
        let problem = format!("matmul {m}x{n}x{k} trans {trans_a} {trans_b}");
        gpu.fastest(
            &problem,
            candidates,
            &[a.size(), b.size(), c.size()],
            |kernel, s| {
                let d = kernel.dispatch(gpu, (&s[0], &s[1], &s[2]), (m, n, k), trans_a, trans_b);
                Ok(vec![d?])
            },
        )
    }

    /// The launch of C[m, n] = op(A) op(B) with this variant.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch(
        self,
        gpu: &Gpu,
        (a, b, c): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        (m, n, k): (usize, usize, usize),
        trans_a: bool,
        trans_b: bool,
    ) -> Result<Dispatch> {
        assert!(
            self.supports(m, n, k, trans_a),
            "{self:?} cannot run {m}x{n}x{k}"
        );
        let file_kernel = |shader| {
            KernelKey::new(shader, "main")
                .with("TRANS_A", f64::from(u8::from(trans_a)))
                .with("TRANS_B", f64::from(u8::from(trans_b)))
        };
        let (key, cols_per_group, rows_per_group) = match self {
            MatmulKernel::Tiled => (file_kernel("gemm_tiled"), 64, 64),
            MatmulKernel::TiledLarge => (file_kernel("gemm_tiled_large"), 128, 128),
            MatmulKernel::Vec4 => (file_kernel("matmul_vec4"), 128, 64),
            MatmulKernel::Subgroup | MatmulKernel::SubgroupInOrder => {
                let sg = gpu
                    .fixed_subgroup_size()
                    .expect("the subgroup kernel needs subgroups of a fixed size");
                let (tile, sum) = match self {
                    MatmulKernel::Subgroup => (Tile::large(sg), Accumulation::Fours),
                    _ => (Tile::in_order(), Accumulation::InOrder),
                };
                let kind = GemmKind::Matmul { trans_a, trans_b };
                (
                    gemm_subgroup::key(sg, kind, tile, sum),
                    tile.columns_per_workgroup(sg),
                    tile.rows,
                )
            }
        };
        let words = match self {
            MatmulKernel::Tiled | MatmulKernel::TiledLarge => TILED_PARAMS_WORDS,
            MatmulKernel::Vec4 | MatmulKernel::Subgroup | MatmulKernel::SubgroupInOrder => 4,
        };
        let params = Params::default().u(m).u(n).u(k).padded(words);
        let groups = [
            u32::try_from(n.div_ceil(cols_per_group)).expect("matrix too wide"),
            u32::try_from(m.div_ceil(rows_per_group)).expect("matrix too tall"),
            1,
        ];
        gpu.dispatch(&key, &params, &[(1, a), (2, b), (3, c)], groups)
    }
}

/// The u32 words of the tiled GEMMs' `Params` (gemm_operands.wgsl).
pub const TILED_PARAMS_WORDS: usize = 24;

/// Whether a GEMM of M x N outputs, its K split `splits` ways, fills gemm_tiled_large's 128x128
/// tiles on a hardware GPU: both sides at least a tile, and at least `LARGE_TILE_GRID`
/// workgroups, about one per compute unit of a large GPU (an H100 or H200 has 132). With fewer,
/// the 64x64 tiles' four times as many workgroups keep more units busy.
pub fn fills_large_tiles(m: usize, n: usize, splits: usize) -> bool {
    m >= 128 && n >= 128 && m.div_ceil(128) * n.div_ceil(128) * splits >= LARGE_TILE_GRID
}

/// See `fills_large_tiles`.
const LARGE_TILE_GRID: usize = 128;

impl MatMul {
    pub fn new(trans_a: bool, trans_b: bool) -> Self {
        Self { trans_a, trans_b }
    }

    /// (m, n, k) for operand shapes, or None when they do not fit together.
    fn dims(&self, a: &[usize], b: &[usize]) -> Option<(usize, usize, usize)> {
        let (&[ar, ac], &[br, bc]) = (a, b) else {
            return None;
        };
        let (m, k) = if self.trans_a { (ac, ar) } else { (ar, ac) };
        let (kb, n) = if self.trans_b { (bc, br) } else { (br, bc) };
        (k == kb).then_some((m, n, k))
    }
}

impl Op for MatMul {
    fn name(&self) -> String {
        format!("matmul(ta={}, tb={})", self.trans_a, self.trans_b)
    }

    fn work(&self, inputs: &[&[usize]], output: &[usize]) -> Work {
        let k = if self.trans_a {
            inputs[0][0]
        } else {
            inputs[0][1]
        };
        Work::moving(inputs, output, 2.0 * (numel(output) * k) as f64)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        self.dims(x[0], x[1])
            .map(|(m, n, _)| vec![m, n])
            .ok_or_else(|| format!("{} cannot multiply {:?} by {:?}", self.name(), x[0], x[1]))
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        let (a, b) = (x[0], x[1]);
        let (ta, tb) = (self.trans_a, self.trans_b);
        // C = op(A) op(B): d op(A) = dC op(B)^T and d op(B) = op(A)^T dC, transposed back
        // into A's and B's own layouts.
        let da = needs[0].then(|| {
            if ta {
                g.matmul_t(b, dy, tb, true)
            } else {
                g.matmul_t(dy, b, false, !tb)
            }
        });
        let db = needs[1].then(|| {
            if tb {
                g.matmul_t(dy, a, true, ta)
            } else {
                g.matmul_t(a, dy, !ta, false)
            }
        });
        vec![da, db]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (m, n, k) = self.dims(&x[0].shape, &x[1].shape).expect("checked shapes");
        let at = |i: usize, p: usize| {
            if self.trans_a {
                x[0].data[p * m + i]
            } else {
                x[0].data[i * k + p]
            }
        };
        let bt = |p: usize, j: usize| {
            if self.trans_b {
                x[1].data[j * k + p]
            } else {
                x[1].data[p * n + j]
            }
        };
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        HostTensor::new(&[m, n], out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let (m, n, k) = self.dims(x[0].shape, x[1].shape).expect("checked shapes");
        let (ta, tb) = (self.trans_a, self.trans_b);
        let buffers = (x[0].buffer, x[1].buffer, y.buffer);
        let candidates = MatmulKernel::candidates(gpu, m, n, k, ta);
        let kernel = MatmulKernel::fastest(gpu, &candidates, buffers, (m, n, k), ta, tb)?;
        Ok(vec![kernel.dispatch(gpu, buffers, (m, n, k), ta, tb)?])
    }
}
