//! Helpers shared by the end-to-end test binaries (each includes this with `mod common;`).
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub mod lan;
pub mod natlab;

/// A temporary directory to work in, and a device whose home (`TANDEM_HOME`) is
/// `home` inside it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        Env { dir, home }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tandem"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("TANDEM_HOME", &self.home)
            .env("TANDEM_NAME", "tester")
            .env_remove("RUST_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok_bytes(args)).unwrap()
    }

    /// [`Env::ok`] for output that need not be text.
    pub fn ok_bytes(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(out.status.success(), "tandem {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Text that does not compress: `n` lines of pseudo-random letters.
pub fn noise(n: usize) -> String {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            let line: String = (0..60)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (b'a' + (seed % 26) as u8) as char
                })
                .collect();
            line + "\n"
        })
        .collect()
}
