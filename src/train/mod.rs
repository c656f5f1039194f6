//! Training: Darknet's YOLO loss (deltas and cost), a surrogate loss that lets candle autograd back-propagate those
//! deltas, the SGD optimizer of `update_network`, the learning-rate policies of `get_current_rate` and the
//! training-mode batch norm of `forward_batchnorm_layer`.
//!
//! Sign convention: Darknet's `delta` arrays hold the NEGATIVE gradient ("target − output"); candle autograd
//! produces the gradient. [`surrogate::yolo_surrogate_loss`] turns a Darknet delta into a scalar whose gradient
//! w.r.t. the yolo layer input is `−delta`, and [`optimizer::DarknetSgd`] accumulates `−grad` into Darknet's
//! `*_updates` buffers, so the update equals Darknet's. See docs/loss.md and docs/optimizer.md.

pub mod box_iou;
pub mod chart;
pub mod checkpoint;
pub mod ema;
pub mod loss;
pub mod map;
pub mod optimizer;
pub mod parity;
pub mod policy;
pub mod progress;
pub mod setup;
pub mod surrogate;
pub mod trainer;

/// Training-mode batch norm lives with the convolutional layer ([`crate::layers::batchnorm`]).
pub use crate::layers::batchnorm;
pub use crate::layers::batchnorm::{
    batchnorm_train, batchnorm_train_with, darknet_mean_variance, BatchNormTrain, BnSums,
    DARKNET_BN_EPS, DARKNET_CPU_ROLLING_MOMENTUM,
};
pub use box_iou::{box_ciou, box_diou, box_giou, box_iou, box_iou_kind, dx_box_iou, Bbox, BoxGrad};
pub use loss::{pack_truth, yolo_activate, yolo_deltas, YoloGeometry, YoloLossResult, TRUTH_SIZE};
pub use optimizer::{DarknetSgd, ParamKind};
pub use policy::{current_batch, current_rate, current_rate_with};
pub use surrogate::{delta_tensor, yolo_surrogate_loss, yolo_train_head};
