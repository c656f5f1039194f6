//! The `candle-darknet` command line: argument parsing only; every subcommand calls into the library.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "candle-darknet",
    version,
    about = "Darknet YOLO detectors on candle, checked layer by layer against the original"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print Darknet's layer table (and optionally run a forward pass with random weights).
    Info(cli::info::InfoArgs),
    /// Convert weights: .weights <-> .safetensors (bit-exact both ways).
    Convert(cli::convert::ConvertArgs),
    /// Write random weights (Darknet's init, fixed seed) for a cfg.
    RandomWeights(cli::random_weights::RandomWeightsArgs),
    /// Compare every layer's output with a reference dump (Darknet's or OpenCV DNN's).
    Compare(cli::compare::CompareArgs),
    /// Detect objects in images, as `darknet detector test` does.
    Detect(cli::detect::DetectArgs),
    /// Measure forward and pipeline latency, throughput and memory.
    Bench(cli::bench::BenchArgs),
    /// Score detections: Darknet mAP and COCO metrics.
    Eval(cli::eval::EvalArgs),
    /// Darknet training-data augmentation: regenerate a reference case or write augmented samples.
    Augment(cli::augment::AugmentArgs),
    /// Train a detector as `darknet detector train` (checkpoints, --resume, chart, mAP).
    Train(cli::train::TrainArgs),
    /// Keep the first K layers' weights, as `darknet partial` (e.g. yolov4-tiny.conv.29).
    Partial(cli::partial::PartialArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Info(a) => cli::info::run(a),
        Command::Convert(a) => cli::convert::run(a),
        Command::RandomWeights(a) => cli::random_weights::run(a),
        Command::Compare(a) => cli::compare::run(a),
        Command::Detect(a) => cli::detect::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Augment(a) => cli::augment::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Partial(a) => cli::partial::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
