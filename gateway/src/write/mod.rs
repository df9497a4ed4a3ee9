//! The write path (DESIGN §5, §6): payloads read as Meilisearch reads them, the task
//! reserved before any node is written, and the gate every write passes.

pub mod gate;
pub mod payload;
pub mod task;
