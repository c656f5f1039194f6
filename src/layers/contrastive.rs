//! `[contrastive]`: mirrors `parse_contrastive` (src/parser.c) and `make_contrastive_layer` /
//! `forward_contrastive_layer` (src/softmax_layer.c) at inference. `forward_contrastive_layer` returns at once
//! when `state.train` is 0, so its output stays the zeros `make_contrastive_layer` allocated (`l.outputs =
//! l.inputs`); no later layer of a detector cfg reads it and `get_network_boxes` skips it (it is not a head).
//! Training (the supervised contrastive loss) is not implemented and is refused.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{io_shapes, DarknetLayer, Inputs, LayerConfig, LayerType, LoadOptions, TrainState};
use crate::cfg::error::CfgResult;
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};

/// `[contrastive]` (`parse_contrastive`), each key with its Darknet default.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContrastiveConfig {
    /// `classes=` (default 1000); replaced by the `[yolo]` layer's classes when `yolo_layer` is set.
    pub classes: usize,
    /// `yolo_layer=` resolved to an absolute index (`params.index + yolo_layer` when negative).
    pub yolo_layer: usize,
    pub temperature: f32,
    pub cls_normalizer: f32,
    /// `max_delta=` (default `FLT_MAX`).
    pub max_delta: f32,
    pub contrastive_neg_max: i64,
}

/// `parse_contrastive`. Darknet dereferences a NULL `[yolo]` pointer when `yolo_layer` is 0 or absent (it
/// crashes), and errors when it points to a layer that is not `[yolo]` (checked in `output_shape`): both refused.
pub fn parse_contrastive(s: &Section, index: usize) -> CfgResult<ContrastiveConfig> {
    let classes = s.int_or("classes", 1000)?;
    let classes = usize::try_from(classes)
        .map_err(|_| s.at_key("classes", "classes must not be negative"))?;
    let rel = s.int_or("yolo_layer", 0)?;
    let abs = if rel < 0 { index as i64 + rel } else { rel };
    if abs == 0 {
        return Err(s.at_key(
            "yolo_layer",
            "[contrastive] needs yolo_layer= naming a [yolo] layer (Darknet dereferences NULL without it)",
        ));
    }
    let yolo_layer = usize::try_from(abs)
        .ok()
        .filter(|&i| i < index)
        .ok_or_else(|| {
            s.at_key(
                "yolo_layer",
                format!("yolo_layer={rel} is not an earlier layer"),
            )
        })?;
    Ok(ContrastiveConfig {
        classes,
        yolo_layer,
        temperature: s.float_or("temperature", 1.0)?,
        cls_normalizer: s.float_or("cls_normalizer", 1.0)?,
        max_delta: s.float_or("max_delta", f32::MAX)?,
        contrastive_neg_max: s.int_or("contrastive_neg_max", 3)?,
    })
}

impl LayerType for ContrastiveConfig {
    fn parse(s: &Section, index: usize) -> CfgResult<Self> {
        parse_contrastive(s, index)
    }

    fn type_name(&self) -> &'static str {
        "contrastive"
    }

    /// `make_contrastive_layer`: `l.outputs = l.inputs`. Darknet leaves `out_w/out_h/out_c` at 0; the input's
    /// shape stands in for them here (no detector cfg puts a layer after `[contrastive]`).
    fn output_shape(&self, i: Shape, prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        match prev.get(self.yolo_layer).map(|l| &l.config) {
            Some(LayerConfig::Yolo(_)) => Ok(i),
            _ => Err(format!(
                "[contrastive] layer should point to the [yolo] layer instead of layer {}",
                self.yolo_layer
            )),
        }
    }

    fn info(&self, l: &LayerSpec) -> String {
        format!("contrastive                   {}", io_shapes(l))
    }
}

/// The built `[contrastive]` layer: zeros at inference.
#[derive(Debug, Clone)]
pub struct Contrastive;

impl DarknetLayer for Contrastive {
    type Config = ContrastiveConfig;

    fn load(_: &ContrastiveConfig, _: &LayerSpec, _: &VarBuilder, _: &LoadOptions) -> Result<Self> {
        Ok(Contrastive)
    }

    /// `forward_contrastive_layer` with `state.train = 0`: returns before touching `l.output`, which
    /// `make_contrastive_layer` zero-filled (`xcalloc`).
    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        x.zeros_like()
    }

    fn forward_train(&self, _x: &Tensor, inputs: &Inputs, _train: &TrainState) -> Result<Tensor> {
        candle_core::bail!(
            "layer {}: training a [contrastive] layer (supervised contrastive loss) is not implemented",
            inputs.index
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::cfg::NetworkConfig;

    const HEAD: &str = "[net]\nwidth=32\nheight=32\nchannels=3\n\n[convolutional]\nfilters=21\nsize=1\n\n\
                        [yolo]\nmask=0,1,2\nanchors=10,14,23,27,37,58\nclasses=2\nnum=3\n\n[route]\nlayers=-2\n\n";

    fn parse_err(tail: &str) -> String {
        NetworkConfig::parse(&format!("{HEAD}{tail}"), Path::new("c.cfg"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn runs_after_a_yolo_layer() {
        let cfg = NetworkConfig::parse(
            &format!("{HEAD}[contrastive]\nyolo_layer=-2\n"),
            Path::new("c.cfg"),
        )
        .unwrap();
        let last = cfg.layers.last().unwrap();
        assert_eq!(last.config.type_name(), "contrastive");
        assert_eq!(last.output, last.input);
    }

    /// Darknet dereferences NULL without `yolo_layer` and errors when it is not a `[yolo]` layer.
    #[test]
    fn refuses_a_missing_or_wrong_yolo_layer() {
        let e = parse_err("[contrastive]\nclasses=1\n");
        assert!(e.contains("c.cfg:") && e.contains("yolo_layer"), "{e}");
        let e = parse_err("[contrastive]\nyolo_layer=-1\n");
        assert!(e.contains("c.cfg:") && e.contains("[yolo] layer"), "{e}");
        let e = parse_err("[contrastive]\nyolo_layer=9\n");
        assert!(e.contains("yolo_layer=9"), "{e}");
    }
}
