//! The examples that finish by themselves run as tests, so they cannot rot.

#[path = "../examples/custom-runtime.rs"]
mod custom_runtime;

/// A user-written runtime (async-executor + async-io) talks to a hand-written Tokio one.
#[test]
fn custom_runtime_example_runs() {
    custom_runtime::main().expect("custom-runtime example");
}
