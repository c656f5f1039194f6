//! A small builder over the ONNX protobuf types of `candle_onnx::onnx` (prost-generated from onnx.proto3): nodes
//! named after the layer that emits them (`L12_Conv_0`), initializers stored as raw little-endian bytes, and the
//! attribute constructors the layers use.

use candle_onnx::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::cfg::LayerSpec;

/// The graph being assembled: nodes in topological order (the order layers add them) and initializers.
#[derive(Debug, Default)]
pub struct OnnxGraph {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    /// Prefix of the names created now (`L{index}`), set by the exporter before each layer.
    pub(crate) prefix: String,
    counter: usize,
    /// Store convolution weights as float16 initializers, each followed by a `Cast` to float (`--fp16`).
    pub(crate) fp16_weights: bool,
    /// The opset the graph is written for (the few ops whose signature changed read it).
    pub opset: i64,
    /// Write mish as ONNX's `Mish` op (opset 18+) instead of Darknet's thresholded softplus (see
    /// [`super::ExportOptions::mish_op`]).
    pub mish_op: bool,
}

impl OnnxGraph {
    pub(crate) fn new(fp16_weights: bool, opset: i64) -> Self {
        OnnxGraph {
            fp16_weights,
            opset,
            ..Default::default()
        }
    }

    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{}_{what}_{}", self.prefix, self.counter)
    }

    /// Appends one node `op(inputs) -> output` and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(op);
        self.node_named(op, inputs, attrs, &out);
        out
    }

    /// Appends one node whose output has the name `out`.
    pub fn node_named(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>, out: &str) {
        let name = format!("{out}_node");
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            name,
            op_type: op.to_string(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// A float initializer of `shape` (row-major `data`).
    pub fn const_f32(&mut self, shape: &[usize], data: &[f32]) -> String {
        let name = self.fresh("const");
        self.initializers.push(tensor_f32(&name, shape, data));
        name
    }

    /// A float scalar (rank 0), broadcast by the element-wise ops.
    pub fn scalar(&mut self, v: f32) -> String {
        self.const_f32(&[], &[v])
    }

    /// An int64 vector (shapes, axes, slice bounds, gather indices).
    pub fn const_i64(&mut self, data: &[i64]) -> String {
        let name = self.fresh("const");
        self.initializers.push(TensorProto {
            dims: vec![data.len() as i64],
            data_type: DataType::Int64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            name: name.clone(),
            ..Default::default()
        });
        name
    }

    /// A learned parameter (convolution weights and biases): float, or float16 plus a `Cast` to float when the
    /// graph stores its weights in half precision. Returns the name of the float value.
    pub fn weight(&mut self, shape: &[usize], data: &[f32]) -> String {
        if !self.fp16_weights {
            return self.const_f32(shape, data);
        }
        let name = self.fresh("const_f16");
        self.initializers.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float16 as i32,
            raw_data: data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            name: name.clone(),
            ..Default::default()
        });
        self.node("Cast", &[&name], vec![int("to", DataType::Float as i64)])
    }

    /// `x[:, start..end]` along `axis` (a `Slice` with constant bounds).
    pub fn slice(&mut self, x: &str, axis: i64, start: i64, end: i64) -> String {
        let s = self.const_i64(&[start]);
        let e = self.const_i64(&[end]);
        let a = self.const_i64(&[axis]);
        self.node("Slice", &[x, &s, &e, &a], vec![])
    }

    /// `Reshape(x, shape)`; a 0 in `shape` keeps the input's dimension (used for the batch).
    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.const_i64(shape);
        self.node("Reshape", &[x, &s], vec![])
    }

    /// `x op c` with a float scalar constant `c`.
    pub fn binary_scalar(&mut self, op: &str, x: &str, c: f32) -> String {
        let c = self.scalar(c);
        self.node(op, &[x, &c], vec![])
    }
}

/// A float initializer.
pub(crate) fn tensor_f32(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        name: name.to_string(),
        ..Default::default()
    }
}

/// One dimension of a value's shape: a number, or a name (`batch`) for a dynamic one.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(usize),
    Named(String),
}

/// A float tensor value of the given shape (graph inputs and outputs).
pub(crate) fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Named(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An `ints` attribute.
pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// An `int` attribute.
pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// A `float` attribute.
pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

/// A `string` attribute.
pub fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// What a layer's ONNX form may read besides its input: its own spec and the graph names of earlier layers'
/// outputs (`net.layers[j].output`).
pub struct OnnxCtx<'a> {
    pub spec: &'a LayerSpec,
    pub specs: &'a [LayerSpec],
    pub(crate) outputs: &'a [String],
}

impl OnnxCtx<'_> {
    /// The graph name of layer `j`'s output.
    pub fn output(&self, j: usize) -> &str {
        &self.outputs[j]
    }
}

/// What [`crate::layers::DarknetLayer::to_onnx`] returns: the output's name, or why the layer has no exact form.
pub type OnnxResult = std::result::Result<String, String>;
