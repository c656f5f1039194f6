//! What a training run reports while it runs: [`TrainEvent`]s handed to the caller's callback (the library
//! does not print). Their `Display` gives Darknet's `train_detector` lines, so a command line can print them.

use std::fmt;
use std::path::PathBuf;

/// The numbers of one finished iteration (Darknet's per-iteration line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IterationStats {
    /// Iterations done, this one included.
    pub iteration: usize,
    /// `Σ get_network_cost / (subdivisions·mini_batch)`.
    pub loss: f32,
    /// Darknet's `avg_loss = .9·avg_loss + .1·loss`.
    pub avg_loss: f32,
    /// The learning rate this iteration's update used.
    pub rate: f32,
    /// Wall time of the iteration (loading the batch included).
    pub seconds: f64,
    /// The part of `seconds` spent waiting for the loader's batch: near 0 when the loader keeps ahead of
    /// the network, a large share when it limits the run.
    pub data_wait_seconds: f64,
    /// Images seen (Darknet's `*net.seen`).
    pub seen: u64,
    /// Images per second of this iteration.
    pub images_per_sec: f64,
    /// Estimated time left, from Darknet's `avg_time = .99·avg_time + .01·time`.
    pub eta_seconds: f64,
}

impl IterationStats {
    /// The share of the iteration's wall time spent waiting for data (0..1).
    pub fn data_wait_share(&self) -> f64 {
        if self.seconds > 0.0 {
            (self.data_wait_seconds / self.seconds).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// Above this share of an iteration spent waiting for data, the iteration line says the loader limits the
/// run.
pub const LOADER_LIMITS_SHARE: f64 = 0.2;

/// One thing a training run reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// The loop is about to start.
    Started {
        cfg: PathBuf,
        from: usize,
        max_batches: usize,
        batch: usize,
        subdivisions: usize,
        mini_batch: usize,
        learning_rate: f32,
        momentum: f32,
        decay: f32,
    },
    /// Something the user should know that does not stop the run.
    Warning(String),
    /// Continuing from a checkpoint.
    Resumed {
        checkpoint: PathBuf,
        iteration: usize,
    },
    /// The network was resized (multi-scale).
    Resized { width: usize, height: usize },
    /// One iteration finished.
    Iteration(IterationStats),
    /// mAP@0.5 on the validation list (`initial`: of the weights before training).
    Map {
        iteration: usize,
        map: f64,
        initial: bool,
    },
    /// A checkpoint was written.
    Checkpoint(PathBuf),
    /// What `ema_alpha` did after an iteration's update (see [`super::ema`]).
    Ema {
        alpha: f32,
        step: super::ema::EmaStep,
    },
    /// The average of the weights was written (`_ema.weights`).
    EmaWeights(PathBuf),
}

impl TrainEvent {
    /// Whether this is one of the per-iteration details a quiet run leaves out (start line, iteration
    /// lines, resizes, checkpoints); mAP, warnings and resume notes are always shown.
    pub fn is_detail(&self) -> bool {
        matches!(
            self,
            TrainEvent::Started { .. }
                | TrainEvent::Iteration(_)
                | TrainEvent::Resized { .. }
                | TrainEvent::Checkpoint(_)
                | TrainEvent::Ema { .. }
                | TrainEvent::EmaWeights(_)
        )
    }

    /// Whether Darknet prints this on stdout (the iteration and mAP lines) rather than stderr.
    pub fn is_result(&self) -> bool {
        matches!(self, TrainEvent::Iteration(_) | TrainEvent::Map { .. })
    }
}

/// `h:mm:ss`.
pub fn format_eta(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

impl fmt::Display for TrainEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainEvent::Started {
                cfg,
                from,
                max_batches,
                batch,
                subdivisions,
                mini_batch,
                learning_rate,
                momentum,
                decay,
            } => write!(
                f,
                "training {} from iteration {from} to {max_batches}: batch {batch} = {subdivisions} x {mini_batch}, lr {learning_rate}, momentum {momentum}, decay {decay}",
                cfg.display()
            ),
            TrainEvent::Warning(w) => write!(f, "warning: {w}"),
            TrainEvent::Resumed {
                checkpoint,
                iteration,
            } => write!(
                f,
                "resuming from {} (iteration {iteration})",
                checkpoint.display()
            ),
            TrainEvent::Resized { width, height } => write!(f, "resizing to {width} x {height}"),
            TrainEvent::Iteration(s) => write!(
                f,
                " {}: {:.6}, {:.6} avg loss, {:.6} rate, {:.3} seconds, {} images, {:.2} images/s, ETA {}, data wait {:.0}%{}",
                s.iteration,
                s.loss,
                s.avg_loss,
                s.rate,
                s.seconds,
                s.seen,
                s.images_per_sec,
                format_eta(s.eta_seconds),
                100.0 * s.data_wait_share(),
                if s.data_wait_share() > LOADER_LIMITS_SHARE {
                    " (the data loader limits this run: more --workers)"
                } else {
                    ""
                }
            ),
            TrainEvent::Map {
                iteration,
                map,
                initial,
            } => write!(
                f,
                " mAP@0.50 at iteration {iteration}{} = {map:.4}",
                if *initial { " (initial weights)" } else { "" }
            ),
            TrainEvent::Checkpoint(p) => write!(f, "checkpoint {}", p.display()),
            // train_network_waitkey's lines.
            TrainEvent::Ema { alpha, step } => {
                let mut lines = Vec::new();
                if step.initialized {
                    lines.push(" EMA initialization ".to_string());
                }
                if step.applied {
                    lines.push(" ema_apply() ".to_string());
                }
                if step.updated {
                    lines.push(format!(" ema_update(), ema_alpha = {alpha:.6} "));
                }
                write!(f, "{}", lines.join("\n"))
            }
            TrainEvent::EmaWeights(p) => {
                write!(f, " EMA weights are saved to the file: {} ", p.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_like_train_detector() {
        let it = TrainEvent::Iteration(IterationStats {
            iteration: 12,
            loss: 1.5,
            avg_loss: 2.25,
            rate: 0.001,
            seconds: 0.5,
            data_wait_seconds: 0.01,
            seen: 96,
            images_per_sec: 16.0,
            eta_seconds: 3725.0,
        });
        assert_eq!(
            it.to_string(),
            " 12: 1.500000, 2.250000 avg loss, 0.001000 rate, 0.500 seconds, 96 images, 16.00 images/s, ETA 1:02:05, data wait 2%"
        );
        let TrainEvent::Iteration(stats) = it else {
            unreachable!()
        };
        let slow = TrainEvent::Iteration(IterationStats {
            data_wait_seconds: 0.3,
            ..stats
        });
        assert!(slow
            .to_string()
            .ends_with("data wait 60% (the data loader limits this run: more --workers)"));
        assert!(it.is_detail() && it.is_result());
        let m = TrainEvent::Map {
            iteration: 0,
            map: 0.25,
            initial: true,
        };
        assert_eq!(
            m.to_string(),
            " mAP@0.50 at iteration 0 (initial weights) = 0.2500"
        );
        assert!(!m.is_detail() && m.is_result());
        assert_eq!(TrainEvent::Warning("x".into()).to_string(), "warning: x");
    }
}
