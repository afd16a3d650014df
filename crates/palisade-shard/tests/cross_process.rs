//! The same key maps to the same shard in two separate processes: this test
//! binary runs itself again as a child (with `PALISADE_SHARD_CHILD` set),
//! the child prints the owners of 10 000 keys under each scheme, with its
//! shards given in the reverse order where the scheme allows it, and the
//! parent compares them with its own.

use std::process::Command;

use palisade_shard::{Scheme, ShardKey, ShardMap};

const CHILD: &str = "PALISADE_SHARD_CHILD";

fn owners(reversed: bool) -> Vec<String> {
    let mut out = Vec::new();
    for scheme in [Scheme::Rendezvous, Scheme::Ring, Scheme::Jump] {
        let mut shards: Vec<(String, f64)> = (0..7)
            .map(|i| {
                (
                    format!("users-{i}"),
                    if i == 3 && scheme != Scheme::Jump {
                        2.0
                    } else {
                        1.0
                    },
                )
            })
            .collect();
        // Jump numbers its shards by order; the others must not care.
        if reversed && scheme != Scheme::Jump {
            shards.reverse();
        }
        let map = ShardMap::new(scheme, 200, shards.iter().map(|(n, w)| (n.as_str(), *w))).unwrap();
        for id in 0..10_000u64 {
            out.push(format!(
                "{} {id} {}",
                scheme.as_str(),
                map.owner_name(ShardKey::from(id))
            ));
        }
    }
    out
}

/// Does nothing in a normal run; in the child, prints the owners.
#[test]
fn child_prints_owners() {
    if std::env::var_os(CHILD).is_some() {
        for line in owners(true) {
            println!("owner: {line}");
        }
    }
}

#[test]
fn two_processes_agree_on_every_key() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(exe)
        .args([
            "--exact",
            "child_prints_owners",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("the child process runs");
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    // The harness may print its own text before the first line.
    let theirs: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once("owner: ").map(|(_, o)| o))
        .collect();
    let ours = owners(false);
    assert_eq!(theirs.len(), ours.len(), "the child printed every owner");
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b);
    }
}
