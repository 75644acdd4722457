//! One module per subcommand, each with its `Args` (or `Command`) and `run`.

pub mod dlq;
pub mod history;
pub mod lag_exporter;
pub mod produce;
pub mod receiver;
pub mod replay;
pub mod router;
pub mod sink;
pub mod status;
pub mod tail;
pub mod topics;
pub mod verify;
