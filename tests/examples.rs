//! The examples that finish by themselves run as tests, so they cannot rot.

#[path = "../examples/broadcast.rs"]
mod broadcast;
#[path = "../examples/custom-runtime.rs"]
mod custom_runtime;
#[path = "../examples/handler.rs"]
mod handler;
#[path = "../examples/streams.rs"]
mod streams;

/// A user-written runtime (async-executor + async-io) talks to a hand-written Tokio one.
#[test]
fn custom_runtime_example_runs() {
    custom_runtime::main().expect("custom-runtime example");
}

/// The chat in the handler style.
#[test]
fn handler_example_runs() {
    handler::main().expect("handler example");
}

/// The same chat in the stream style.
#[test]
fn streams_example_runs() {
    streams::main().expect("streams example");
}

/// One publisher fanned out to three subscribers through a forwarder.
#[test]
fn broadcast_example_runs() {
    broadcast::main().expect("broadcast example");
}
