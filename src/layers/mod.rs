//! One module per Darknet layer type, each naming the C function it mirrors.

pub mod activation;
pub mod avgpool;
pub mod convolutional;
pub mod maxpool;
pub mod region;
pub mod reorg;
pub mod route;
pub mod scale_channels;
pub mod shortcut;
pub mod upsample;
pub mod yolo;
