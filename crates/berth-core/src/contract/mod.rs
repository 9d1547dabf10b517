//! Contracts of the ports: the behaviour every adapter of a port must show,
//! as checks an adapter's tests run against it (the fakes, the local
//! adapters, the AWS adapters on the emulator). The ledger's is
//! [`crate::ledger::contract`].

pub mod runtime;
pub mod volumes;
