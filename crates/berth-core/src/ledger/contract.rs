//! The ledger contract: behaviour every `Ledger` adapter must show.
