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
    /// Anchor boxes by k-means over the training labels (Darknet's `detector calc_anchors`).
    Anchors(cli::anchors::AnchorsArgs),
    /// List the built-in named models and what is present locally.
    Models(cli::models::ModelsArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Anchors(a) => cli::anchors::run(a),
        Command::Models(a) => cli::models::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
