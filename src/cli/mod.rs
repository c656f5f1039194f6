//! One file per subcommand.
pub mod eval;
