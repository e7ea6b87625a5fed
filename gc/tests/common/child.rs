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

/// [`child`], asserting that the child passed (its output in the message if not).
#[allow(dead_code)] // not every test file that shares this module uses it
pub fn child_passes(name: &str, env: &[(&str, &str)]) {
    let out = child(name, env);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
