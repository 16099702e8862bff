//! Loading an ONNX model into tract, once, at start-up: parse, fix the input
//! shape (so tract optimises for static shapes), optimise, and check that it
//! runs and answers with the shape we expect.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tract_onnx::prelude::*;

/// Where a model comes from: a file, or bytes built into the binary.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// An ONNX file on disk.
    File(PathBuf),
    /// A model compiled into the binary (`label` names it in messages).
    Builtin {
        label: &'static str,
        bytes: &'static [u8],
    },
}

impl ModelSource {
    /// How to name this model in messages and reports.
    pub(crate) fn label(&self) -> String {
        match self {
            ModelSource::File(p) => p.display().to_string(),
            ModelSource::Builtin { label, .. } => format!("built-in {label}"),
        }
    }
}

/// A loaded, optimised model and what its ONNX metadata says about it.
pub(crate) struct LoadedModel {
    /// The optimised plan with its run state, kept between calls: `plan.run`
    /// would build a fresh state (op states, value slots) per call, which costs
    /// more than the 40x24 classifier itself.
    state: TypedSimpleState,
    /// `pvtherm.*` metadata properties of the ONNX file, without the prefix.
    pub(crate) metadata: HashMap<String, String>,
    /// Where it came from (for messages).
    pub(crate) label: String,
}

impl LoadedModel {
    /// Runs the model on one f32 input of `shape` and returns its single output.
    pub(crate) fn run_f32(&mut self, shape: [usize; 4], data: &[f32]) -> Result<TValue> {
        let input = Tensor::from_shape(&shape, data)?;
        let mut out = self.state.run(tvec!(input.into()))?;
        Ok(out.remove(0))
    }

    /// A metadata value parsed as `T`, or `default` when absent.
    pub(crate) fn meta_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.metadata.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                anyhow::anyhow!("{}: metadata {key}={v:?} is not a valid value", self.label)
            }),
        }
    }
}

/// What a model must be to load in one role: its `pvtherm.kind` metadata
/// (when the file has one) and the channels of its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expected {
    /// `detector`, `classifier` or `anomaly`.
    pub(crate) kind: &'static str,
    /// Channels of the single `[1, C, h, w]` output.
    pub(crate) channels: usize,
}

/// Loads `source`, fixes its single input to `input_shape` (f32), optimises,
/// runs it once on zeros and checks that the file is the `expected` kind of
/// model and its single output has the expected channels. `threads` > 1 gives
/// the plan its own pool for the matrix products. Every failure names the
/// model and what is wrong.
pub(crate) fn load(
    source: &ModelSource,
    expected: Expected,
    input_shape: [usize; 4],
    threads: usize,
) -> Result<LoadedModel> {
    let Expected {
        kind,
        channels: expected_channels,
    } = expected;
    let label = source.label();
    let mut bytes = Vec::new();
    let reader: &mut dyn Read = match source {
        ModelSource::File(path) => {
            bytes =
                std::fs::read(path).with_context(|| format!("cannot read model file {label}"))?;
            &mut bytes.as_slice()
        }
        ModelSource::Builtin { bytes, .. } => &mut &bytes[..],
    };
    let onnx = super::onnx_ops::onnx();
    let proto = onnx.proto_model_for_read(reader).map_err(|e| {
        anyhow::anyhow!("{label} is not a valid ONNX model (protobuf did not parse: {e})")
    })?;
    drop(bytes);
    let graph = proto
        .graph
        .as_ref()
        .with_context(|| format!("{label}: ONNX file has no graph"))?;
    if graph.input.len() != 1 || graph.output.len() != 1 {
        bail!(
            "{label}: expected a model with one input and one output, found {} inputs and {} outputs",
            graph.input.len(),
            graph.output.len()
        );
    }
    let missing = super::onnx_ops::unsupported(&onnx, &graph.node);
    if !missing.is_empty() {
        bail!(
            "{label}: uses ONNX operator(s) {}, which this build of pvtherm does not include \
             (it loads {}: what pvtherm's models use); rebuild with `--features all-onnx-ops` \
             to run other models",
            missing.join(", "),
            super::onnx_ops::SUPPORTED.join(", ")
        );
    }
    let model = onnx
        .model_for_proto_model(&proto)
        .map_err(|e| anyhow::anyhow!("{label}: tract cannot read this ONNX model: {e:#}"))?;
    let mut metadata = HashMap::new();
    for (key, value) in &model.properties {
        if let Some(k) = key.strip_prefix("onnx.metadata_props.pvtherm.") {
            if let Ok(s) = value
                .try_as_plain_ram()
                .and_then(|v| v.to_scalar::<String>().cloned())
            {
                metadata.insert(k.to_string(), s);
            }
        }
    }
    // A wrong file in the right place (the detector named as classifier) is
    // said as such, before its shape makes a vaguer error.
    if let Some(found) = metadata.get("kind").filter(|k| k.as_str() != kind) {
        bail!(
            "{label}: metadata pvtherm.kind = {found:?}, but the {kind} model is expected here; \
             name the pvtherm {kind} ONNX file"
        );
    }
    let executor = executor(threads)?;
    let plan = codegen_knobs(kind)?
        .enter(|| {
            model
                .with_input_fact(0, f32::fact(input_shape).into())
                .and_then(|m| m.into_optimized())
                .and_then(|m| {
                    m.into_runnable_with_options(&RunOptions {
                        executor,
                        ..RunOptions::default()
                    })
                })
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "{label}: the model does not accept a single-channel input of shape {input_shape:?} \
                 (is it a pvtherm model, with the right input size?): {e:#}"
            )
        })?;
    let mut state = plan
        .spawn()
        .map_err(|e| anyhow::anyhow!("{label}: cannot set up a run: {e:#}"))?;
    let zeros = Tensor::zero::<f32>(&input_shape)?;
    let outputs = state
        .run(tvec!(zeros.into()))
        .map_err(|e| anyhow::anyhow!("{label}: test run on a blank input failed: {e:#}"))?;
    let output_shape = outputs[0].shape().to_vec();
    if output_shape.len() != 4 || output_shape[0] != 1 || output_shape[1] != expected_channels {
        bail!(
            "{label}: output shape {output_shape:?} is not [1, {expected_channels}, h, w]; \
             this is not the kind of pvtherm model expected here"
        );
    }
    Ok(LoadedModel {
        state,
        metadata,
        label,
    })
}

/// How tract lowers a model's float convolutions, for this one model (a
/// scope, not process state). tract's defaults send the detector's 3x3
/// convolutions over 80x64x32 maps to lazy im2col (a gather per output
/// position) and its first 4x4/4 convolution to the direct spatial kernel;
/// eager im2col followed by one matrix product runs the f32 detector 1.6x
/// faster with the same detections within 1e-4 px (BENCHMARKS.md, section 2).
/// The classifier's 40x24 crops are the opposite case (0.09 ms per crop with
/// tract's defaults, 0.13 with these), so it keeps tract's. A `TRACT_*`
/// variable set in the environment still wins, so each choice can be
/// measured against tract's default.
fn codegen_knobs(kind: &str) -> Result<tract_onnx::prelude::tract_data::knobs::KnobScope> {
    const DETECTOR: [(&str, &str); 3] = [
        ("TRACT_DISABLE_DIRECT_SPATIAL", "true"),
        // Never lazy because of the kernel's size or the scratch's size:
        // the eager scratch of the largest convolution is 5.9 MB.
        ("TRACT_LAZY_IM2COL_MIN_KERNEL", "1000000"),
        ("TRACT_LAZY_IM2COL_MAX_EAGER_BYTES", "1000000000"),
    ];
    let knobs: &[(&str, &str)] = if kind == "detector" { &DETECTOR } else { &[] };
    let unset = knobs
        .iter()
        .copied()
        .filter(|(name, _)| std::env::var_os(name).is_none());
    tract_onnx::prelude::tract_data::knobs::KnobScope::new(unset)
        .map_err(|e| anyhow::anyhow!("tract rejected pvtherm's convolution settings: {e:#}"))
}

/// The executor for tract's matrix products: its own pool of `threads` when
/// more than one is asked for (the `threads` cargo feature), else the calling
/// thread.
#[cfg(feature = "threads")]
fn executor(threads: usize) -> Result<Option<tract_linalg::multithread::Executor>> {
    Ok((threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads)))
}

/// Without the `threads` cargo feature there is no pool: more than one thread
/// is a configuration error, said as such rather than silently ignored.
#[cfg(not(feature = "threads"))]
fn executor(threads: usize) -> Result<Option<tract_linalg::multithread::Executor>> {
    if threads > 1 {
        bail!(
            "[model] threads = {threads}: this pvtherm was built without the `threads` feature \
             (one thread only); set threads = 1, or rebuild with `cargo build --release --features threads`"
        );
    }
    Ok(None)
}
