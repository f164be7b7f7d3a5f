//! A LAN of test hosts: each host a network namespace with a real interface (one end
//! of a veth pair) on one switch (a bridge in a namespace of its own), 10.99.0.1,
//! 10.99.0.2, ... Peers run in them with the flags a user types (every interface,
//! mDNS on), isolated from the machine's own network and from other tests' LANs.
//! Needs root; without it [`Lan::new`] says so and every host is this machine
//! itself, so the same tests still run with default flags, on a busier network.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Lan {
    /// The switch's namespace, then one per host.
    switch: Option<String>,
    hosts: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2) is installed");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Lan {
    /// `n` hosts on one switch.
    pub fn new(n: usize) -> Lan {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("note: not root, so no network namespaces: the peers run on this machine itself");
            return Lan { switch: None, hosts: Vec::new() };
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = format!("{}{}", std::process::id() % 10_000, NEXT.fetch_add(1, Ordering::SeqCst));
        let switch = format!("tdsw{id}");
        ip(&["netns", "add", &switch]);
        let lan = Lan { switch: Some(switch.clone()), hosts: Vec::new() };
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        let mut lan = lan;
        for i in 0..n {
            let host = format!("tdh{id}x{i}");
            ip(&["netns", "add", &host]);
            lan.hosts.push(host.clone());
            let port = format!("p{i}");
            ip(&[
                "link", "add", "eth0", "netns", &host, "type", "veth", "peer", "name", &port, "netns",
                &switch,
            ]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
            let addr = format!("10.99.0.{}/24", i + 1);
            ip(&["-n", &host, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &host, "link", "set", "eth0", "up", "multicast", "on"]);
            ip(&["-n", &host, "link", "set", "lo", "up"]);
            ip(&["-n", &host, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        lan
    }

    /// The network namespace of host `i`; `None` (this machine) without root.
    pub fn host(&self, i: usize) -> Option<&str> {
        self.hosts.get(i).map(String::as_str)
    }

    /// True when the hosts are namespaces of their own.
    pub fn isolated(&self) -> bool {
        self.switch.is_some()
    }

    /// Unplug host `i` from the switch (its interface goes down), or plug it back.
    pub fn set_link(&self, i: usize, up: bool) {
        if let Some(host) = self.host(i) {
            ip(&["-n", host, "link", "set", "eth0", if up { "up" } else { "down" }]);
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(self.switch.iter()) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// `program` run on `host` (inside its namespace), or here.
pub fn command_on(host: Option<&str>, program: &str) -> Command {
    match host {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}
