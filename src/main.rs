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
    /// Darknet training-data augmentation: regenerate a reference case or write augmented samples.
    Augment(cli::augment::AugmentArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Augment(a) => cli::augment::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
