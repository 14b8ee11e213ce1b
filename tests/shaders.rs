//! Every WGSL file under shaders/ parses and validates, and is compiled into the binary.

use std::collections::BTreeSet;

use byol_wgpu::gpu::SHADERS;
use byol_wgpu::ops::conv2d::ConvPass;
use byol_wgpu::ops::gemm_subgroup::{self, Accumulation, GemmKind, Tile};
use byol_wgpu::ops::{conv_direct, conv_rows};

fn validate(name: &str, source: &str) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}.wgsl does not parse:\n{}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| {
        panic!(
            "{name}.wgsl does not validate:\n{}",
            e.emit_to_string(source)
        )
    });
}

/// shaders/cascade.wgsl and gemm_operands.wgsl are no kernels of their own: they go in front of
/// the shaders that sum and of the tiled GEMMs.
const PRELUDES: [&str; 2] = ["cascade", "gemm_operands"];

#[test]
fn every_shader_file_validates_and_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if PRELUDES.contains(&name.as_str()) {
                validate(&name, &std::fs::read_to_string(&path).unwrap());
            } else {
                on_disk.insert(name);
            }
        }
    }
    // What the binary compiles: each file with its preludes.
    for shader in SHADERS {
        validate(shader.name, shader.source);
    }
    let registered: BTreeSet<String> = SHADERS.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(on_disk, registered, "shaders/ and gpu::SHADERS disagree");
}

#[test]
fn generated_matmul_kernels_validate() {
    for sg in [4, 8, 16] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let kind = GemmKind::Matmul {
                trans_a: ta,
                trans_b: tb,
            };
            let tile = Tile::large(sg);
            validate(
                &kind.cache_name(sg, tile, Accumulation::Fours),
                &gemm_subgroup::source(sg, kind, tile, Accumulation::Fours),
            );
        }
    }
    // The in-order variant hardware GPUs time, on their subgroup sizes too (A not transposed).
    for sg in [4, 8, 16, 32, 64] {
        for tb in [false, true] {
            let kind = GemmKind::Matmul {
                trans_a: false,
                trans_b: tb,
            };
            let (tile, sum) = (Tile::in_order(), Accumulation::InOrder);
            validate(
                &kind.cache_name(sg, tile, sum),
                &gemm_subgroup::source(sg, kind, tile, sum),
            );
        }
    }
}

#[test]
fn generated_convolution_kernels_validate() {
    let kinds = [
        GemmKind::Conv(ConvPass::Forward),
        GemmKind::Conv(ConvPass::GradInput),
        GemmKind::Conv(ConvPass::GradWeight),
        GemmKind::ConvWeightGradByTaps,
    ];
    for sg in [8, 16] {
        for (m, n) in [(64, 4096), (27, 64), (3, 9), (16, 20)] {
            let tile = Tile::covering(sg, m, n);
            for kind in kinds {
                validate(
                    &kind.cache_name(sg, tile, Accumulation::Fours),
                    &gemm_subgroup::source(sg, kind, tile, Accumulation::Fours),
                );
            }
        }
    }
    for sg in [4, 8, 16, 32, 64] {
        for kind in kinds {
            let (tile, sum) = (Tile::in_order(), Accumulation::InOrder);
            validate(
                &kind.cache_name(sg, tile, sum),
                &gemm_subgroup::source(sg, kind, tile, sum),
            );
        }
    }
}

#[test]
fn generated_direct_convolution_kernels_validate() {
    for pass in [ConvPass::Forward, ConvPass::GradInput] {
        for sg in [8, 16] {
            for (channels, k) in [(1, 3), (3, 3), (3, 1), (8, 5), (16, 3)] {
                validate(
                    &format!("conv_direct_{pass:?}_{sg}_{channels}x{k}x{k}"),
                    &conv_direct::source(pass, sg, channels, k, k),
                );
            }
        }
    }
}

#[test]
fn generated_row_convolution_kernels_validate() {
    for sg in [4, 8, 16] {
        for (m, n) in [(64, 4096), (3, 64), (20, 8)] {
            let tile = Tile::covering(sg, m, n);
            for one_row in [false, true] {
                validate(
                    &format!("conv_rows_{sg}_{tile:?}_{one_row}"),
                    &conv_rows::source(sg, tile, one_row),
                );
            }
        }
    }
    for sg in [4, 8, 16] {
        for rows in [sg, 32.max(4 * sg)] {
            validate(
                &format!("conv_rows_GradWeight_{sg}_{rows}"),
                &conv_rows::weight_grad_source(sg, rows),
            );
        }
    }
}

#[test]
fn a_broken_shader_fails_validation() {
    let broken = "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }";
    let parsed = naga::front::wgsl::parse_str(broken);
    let rejected = match parsed {
        Err(_) => true,
        Ok(module) => naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .is_err(),
    };
    assert!(rejected, "a type error must not pass the shader check");
}
