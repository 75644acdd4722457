//! End-to-end tests against a real broker and real HTTPS receivers. They need `nisshi` on PATH
//! and the `auditstream` binary built; `scripts/test.sh` takes care of both.

mod delivery;
mod faults;
mod filters;
mod inspect;
mod observability;
mod pipeline;
mod rebalance;
mod router_dead_letters;
mod security;
