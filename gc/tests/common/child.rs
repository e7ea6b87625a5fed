//! Running one test of the calling test binary alone in a child process, for cases whose
//! state is process-wide or that end the process.

use std::process::{Command, Output};

/// Runs test `name` of this binary alone in a child process with `env` set.
pub fn child(name: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}
