//! The ONNX operators this build of pvtherm can load, and nothing more.
//!
//! `tract_onnx::onnx()` registers every ONNX operator tract knows (LSTM, STFT,
//! tree ensembles, ...), so link-time optimisation has to keep all of them:
//! 4.1 MB of the release binary (docs/INSTALL.md, binary size). pvtherm's
//! models use six: `Conv`, `Relu`, `Add` (the classifier's residual blocks),
//! and for the int8 files `QuantizeLinear`, `QLinearConv`, `DequantizeLinear`
//! (per-tensor, as the export writes them; the export quantises Conv and Relu
//! only, so residual sums stay a float `Add` between Dequantize and Quantize:
//! tract-onnx 0.23 has no `QLinearAdd`, a Microsoft contrib operator).
//! This registry builds those six from tract-hir's public operators. A build
//! with the cargo feature `all-onnx-ops` takes tract's full registry instead,
//! for custom models with other operators.

// With `all-onnx-ops` the builders below are unused outside the tests.
#![cfg_attr(feature = "all-onnx-ops", allow(dead_code, unused_imports))]

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::activations::Clip;
use tract_onnx::tract_hir::ops::cnn::{Conv, PaddingSpec};
use tract_onnx::tract_hir::ops::expandable::expand;
use tract_onnx::tract_hir::ops::quant::{
    quantize_linear_i8, quantize_linear_u8, DequantizeLinearF32,
};
use tract_onnx::Onnx;

/// What an operator builder returns to tract's ONNX parser.
type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// The ONNX operators `onnx()` can load (sorted, for messages).
pub(crate) const SUPPORTED: [&str; 6] = [
    "Add",
    "Conv",
    "DequantizeLinear",
    "QLinearConv",
    "QuantizeLinear",
    "Relu",
];

/// An ONNX parser that knows pvtherm's operators (see the module doc).
#[cfg(not(feature = "all-onnx-ops"))]
pub(crate) fn onnx() -> Onnx {
    let mut ops = OnnxOpRegister::default();
    ops.insert("Add", add);
    ops.insert("Conv", conv);
    ops.insert("QLinearConv", qlinear_conv);
    ops.insert("Relu", relu);
    ops.insert("QuantizeLinear", quantize_linear);
    ops.insert("DequantizeLinear", dequantize_linear);
    Onnx {
        op_register: ops,
        ..Onnx::default()
    }
}

/// An ONNX parser with every operator tract knows (cargo feature `all-onnx-ops`).
#[cfg(feature = "all-onnx-ops")]
pub(crate) fn onnx() -> Onnx {
    tract_onnx::onnx()
}

/// The operators of `nodes` that `onnx()` cannot build, sorted and distinct.
pub(crate) fn unsupported<'a>(
    onnx: &Onnx,
    nodes: impl IntoIterator<Item = &'a NodeProto>,
) -> Vec<String> {
    let mut missing: Vec<String> = nodes
        .into_iter()
        .map(|n| n.op_type.clone())
        .filter(|op| !onnx.op_register.0.contains_key(op))
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// The attributes `Conv` and `QLinearConv` share: kernel, padding, strides,
/// dilations, groups (ONNX defaults when absent).
fn conv_attributes(node: &NodeProto) -> TractResult<Conv> {
    let kernel_shape: Option<TVec<usize>> = node.get_attr_opt_tvec("kernel_shape")?;
    let padding = if let Some(pads) = node.get_attr_opt_tvec::<usize>("pads")? {
        let (before, after) = pads.split_at(pads.len() / 2);
        PaddingSpec::Explicit(before.into(), after.into())
    } else {
        match node.get_attr_opt::<&str>("auto_pad")?.unwrap_or("NOTSET") {
            "NOTSET" | "VALID" => PaddingSpec::Valid,
            "SAME_UPPER" => PaddingSpec::SameUpper,
            "SAME_LOWER" => PaddingSpec::SameLower,
            other => bail!(
                "{}: auto_pad {other:?} is not an ONNX padding mode",
                node.name
            ),
        }
    };
    let mut op = Conv::default().padding(padding);
    if let Some(k) = kernel_shape {
        op = op.kernel_shape(k);
    }
    if let Some(g) = node.get_attr_opt::<usize>("group")? {
        op = op.group(g);
    }
    if let Some(d) = node.get_attr_opt_tvec::<usize>("dilations")? {
        op = op.dilations(d);
    }
    if let Some(s) = node.get_attr_opt_tvec::<usize>("strides")? {
        op = op.strides(s);
    }
    Ok(op)
}

/// `Conv(X, W[, B])`.
fn conv(_: &ParsingContext, node: &NodeProto) -> Built {
    let mut op = conv_attributes(node)?;
    if node.input.len() == 3 {
        op = op.bias_input(2);
    }
    Ok((expand(op), vec![]))
}

/// `QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp[, B])`.
fn qlinear_conv(_: &ParsingContext, node: &NodeProto) -> Built {
    let mut op = conv_attributes(node)?;
    op.x_scale_input = Some(1);
    op.x_zero_point_input = Some(2);
    op.k_input = Some(3);
    op.k_scale_input = Some(4);
    op.k_zero_point_input = Some(5);
    op.y_scale_input = Some(6);
    op.y_zero_point_input = Some(7);
    if node.input.len() == 9 {
        op.bias_input = Some(8);
    }
    Ok((expand(op), vec![]))
}

/// `Add(A, B)`, with ONNX (numpy) broadcasting: the sum of a residual block.
fn add(_: &ParsingContext, _: &NodeProto) -> Built {
    Ok((tract_onnx::tract_hir::ops::math::Add.into_hir(), vec![]))
}

/// `Relu(X)` = max(X, 0).
fn relu(_: &ParsingContext, _: &NodeProto) -> Built {
    Ok((expand(Clip::new(Some(0.0), None)), vec![]))
}

fn quantize_linear(_: &ParsingContext, node: &NodeProto) -> Built {
    Ok((
        expand(PerTensorQuant::new(QuantStep::Quantize, node)?),
        vec![],
    ))
}

fn dequantize_linear(_: &ParsingContext, node: &NodeProto) -> Built {
    Ok((
        expand(PerTensorQuant::new(QuantStep::Dequantize, node)?),
        vec![],
    ))
}

/// Which way a [`PerTensorQuant`] converts.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum QuantStep {
    /// ONNX `QuantizeLinear`: f32 -> u8 or i8 (the zero point's type).
    Quantize,
    /// ONNX `DequantizeLinear`: u8, i8 or i32 -> f32.
    Dequantize,
}

/// ONNX `QuantizeLinear` / `DequantizeLinear` with one scale and zero point
/// for the whole tensor (inputs: x, scale[, zero point], both constants).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct PerTensorQuant {
    step: QuantStep,
    has_zero_point: bool,
}

impl PerTensorQuant {
    fn new(step: QuantStep, node: &NodeProto) -> TractResult<Self> {
        let block_size = node.get_attr_opt::<i64>("block_size")?.unwrap_or(0);
        ensure!(
            block_size == 0,
            "{} ({}): blocked quantisation is not supported",
            node.name,
            node.op_type
        );
        Ok(PerTensorQuant {
            step,
            has_zero_point: node.input.len() == 3,
        })
    }

    /// The constant scale and zero point (inputs 1 and 2); the zero point
    /// defaults to u8 0 as ONNX says.
    fn scale_and_zero_point(
        &self,
        target: &TypedModel,
        inputs: &[OutletId],
        prefix: &str,
    ) -> TractResult<(f32, Arc<Tensor>)> {
        let constant =
            |outlet: OutletId, what: &str| {
                target.outlet_fact(outlet)?.konst.clone().with_context(|| {
                    format!("{prefix}: the {what} must be a constant in the model")
                })
            };
        let scale = constant(inputs[1], "scale")?;
        let zero_point = match inputs.get(2) {
            Some(zp) => constant(*zp, "zero point")?,
            None => rctensor0(0u8),
        };
        ensure!(
            scale.len() == 1 && zero_point.len() == 1,
            "{prefix}: per-channel quantisation is not supported by this build (pvtherm's \
             models are per-tensor); rebuild with --features all-onnx-ops"
        );
        Ok((scale.cast_to_scalar::<f32>()?, zero_point))
    }
}

impl Expansion for PerTensorQuant {
    fn name(&self) -> StaticName {
        match self.step {
            QuantStep::Quantize => "QuantizeLinear".into(),
            QuantStep::Dequantize => "DequantizeLinear".into(),
        }
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        check_input_arity(inputs, 2 + self.has_zero_point as usize)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[1].datum_type, f32::datum_type())?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        // The integer side has the zero point's type; without one, QuantizeLinear
        // makes u8 and DequantizeLinear takes what it is given (u8, i8, i32).
        let integer = match self.step {
            QuantStep::Quantize => &outputs[0],
            QuantStep::Dequantize => {
                s.equals(&outputs[0].datum_type, f32::datum_type())?;
                &inputs[0]
            }
        };
        if self.has_zero_point {
            s.equals(&integer.datum_type, &inputs[2].datum_type)?;
        } else if self.step == QuantStep::Quantize {
            s.equals(&integer.datum_type, u8::datum_type())?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let (scale, zero_point) = self.scale_and_zero_point(target, inputs, prefix)?;
        let op: Box<dyn TypedOp> = match (self.step, zero_point.datum_type()) {
            // tract's quantisers multiply by the inverse scale.
            (QuantStep::Quantize, DatumType::U8) => Box::new(quantize_linear_u8(
                scale.recip(),
                zero_point.cast_to_scalar()?,
            )),
            (QuantStep::Quantize, DatumType::I8) => Box::new(quantize_linear_i8(
                scale.recip(),
                zero_point.cast_to_scalar()?,
            )),
            (QuantStep::Quantize, dt) => {
                bail!("{prefix}: QuantizeLinear to {dt:?} is not supported (u8 or i8 only)")
            }
            (QuantStep::Dequantize, _) => Box::new(DequantizeLinearF32::new(
                scale,
                zero_point.cast_to_scalar::<i32>()?,
            )),
        };
        target.wire_node(prefix, op, &[inputs[0]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{builtin, ModelSource, Precision};

    /// A residual sum (`Add` of an input and a broadcast constant, as the
    /// residual classifier's blocks write it) loads and computes.
    #[test]
    fn add_loads_and_broadcasts() {
        use tract_onnx::pb::{
            type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
            TypeProto, ValueInfoProto,
        };
        // A float tensor of unknown shape (the shape comes with the input fact).
        let value = |name: &str| ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: 1, // FLOAT
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let proto = ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: "Add".into(),
                    input: vec!["x".into(), "b".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                input: vec![value("x")],
                output: vec![value("y")],
                initializer: vec![TensorProto {
                    name: "b".into(),
                    dims: vec![2, 1],
                    data_type: 1, // FLOAT
                    float_data: vec![10.0, 20.0],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let onnx = onnx();
        let graph = proto.graph.as_ref().unwrap();
        assert_eq!(unsupported(&onnx, &graph.node), Vec::<String>::new());
        let plan = onnx
            .model_for_proto_model(&proto)
            .unwrap()
            .with_input_fact(0, f32::fact([1, 2, 3]).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x = Tensor::from_shape(&[1, 2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let y = plan.run(tvec!(x.into())).unwrap();
        let y = y[0].try_as_plain_ram().unwrap();
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[11.0, 12.0, 13.0, 24.0, 25.0, 26.0]
        );
    }

    /// Every operator of the built-in models is in the registry (a new op in a
    /// retrained model must be added here, or the model will not load).
    #[test]
    fn builtin_models_use_only_registered_operators() {
        let onnx = onnx();
        let builtins = [Precision::F32, Precision::Int8]
            .into_iter()
            .flat_map(|p| [builtin::detector(p), builtin::classifier(p)]);
        for source in builtins {
            let ModelSource::Builtin { bytes, .. } = source else {
                unreachable!("built-in models are built in")
            };
            let proto = onnx.proto_model_for_read(&mut &bytes[..]).unwrap();
            let graph = proto.graph.as_ref().unwrap();
            assert_eq!(unsupported(&onnx, &graph.node), Vec::<String>::new());
        }
        let mut names: Vec<&str> = onnx.op_register.0.keys().map(String::as_str).collect();
        names.sort();
        if cfg!(not(feature = "all-onnx-ops")) {
            assert_eq!(names, SUPPORTED);
        }
    }
}
