//! The `candle-darknet` command line: argument parsing only; every subcommand calls into the library.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(name = "candle-darknet", version, about = "Darknet YOLO detectors on candle, checked layer by layer against the original")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score detections: Darknet mAP and COCO metrics.
    Eval(cli::eval::EvalArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Eval(args) => cli::eval::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
