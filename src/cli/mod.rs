//! One file per subcommand.
pub mod augment;
