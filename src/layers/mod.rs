//! One module per Darknet layer type, each naming the C function it mirrors.

pub mod activation;
pub mod avgpool;
pub mod batchnorm;
pub mod convolutional;
pub mod maxpool;
pub mod region;
pub mod reorg;
pub mod route;
pub mod scale_channels;
pub mod shortcut;
pub mod upsample;
pub mod yolo;

use candle_core::{Result, Var};
use candle_nn::VarMap;

/// What a training-mode forward (`state.train = 1`) needs besides the input: the Vars that hold the rolling
/// statistics, which batch norm moves in place, and the rolling factor.
pub struct TrainState<'a> {
    pub varmap: &'a VarMap,
    /// `.9` on CPU Darknet ([`batchnorm::DARKNET_CPU_ROLLING_MOMENTUM`]).
    pub rolling_momentum: f64,
}

impl TrainState<'_> {
    /// The Var named `name` (names as in [`crate::weights`]).
    pub fn var(&self, name: &str) -> Result<Var> {
        self.varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .get(name)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("no variable '{name}'")))
    }
}
