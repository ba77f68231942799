//! Side-by-side comparison of `webrtc-streams` with the reference Rust stack, `webrtc` 0.21.1:
//! the benchmarks (`benches/`) and the interop tests (`tests/`) that need the reference live in
//! this workspace member, so the library itself never compiles `webrtc` 0.21.1.
//!
//! ```no_run
//! # async fn demo() {
//! use webrtc_streams_compare::anchor;
//!
//! // Two reference peers, connected over loopback with a 1 MiB send buffer limit.
//! let a = anchor::anchor_peer(1 << 20).await;
//! let b = anchor::anchor_peer(1 << 20).await;
//! anchor::negotiate(&a, &b).await;
//! # }
//! ```

pub mod anchor;

/// The migration guide from `webrtc` 0.21 (`docs/migrating-from-webrtc-0.21.md`), included
/// here so that `cargo test --doc` compiles every snippet of it against both crates.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/migrating-from-webrtc-0.21.md")]
pub mod migrating_from_webrtc_0_21 {}
