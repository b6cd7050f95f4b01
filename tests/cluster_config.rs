//! cluster.conf and the o2cb timeouts, with ocfs2-tools' `o2cb --config-file` as referee: what
//! we write it reads the same, what it writes we read the same, and every bad file gets a
//! message that names its line and its problem.

mod common;

use common::{require_tool, run, seed, Rng, Scratch};
use ocfs2::cluster::config::{host_name, ClusterConfig, HeartbeatMode, DEFAULT_PATH};
use ocfs2::cluster::timeouts::{O2cbDefaults, Timeouts};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

const F: &str = DEFAULT_PATH;
/// Linux errno values (the examples package has no libc dependency).
const EINVAL: i32 = 22;
const ENOENT: i32 = 2;

fn cluster(name: &str, count: u32) -> String {
    format!("cluster:\n\tnode_count = {count}\n\tname = {name}\n")
}

fn node(name: &str, number: &str, ip: &str, port: &str, cluster: &str) -> String {
    format!(
        "node:\n\tip_port = {port}\n\tip_address = {ip}\n\tnumber = {number}\n\tname = {name}\n\tcluster = {cluster}\n"
    )
}

/// Stanzas joined by blank lines, as o2cb writes them.
fn file(stanzas: &[String]) -> String {
    stanzas.join("\n")
}

/// `cluster web` (lines 1-3), `node cvm` (5-10), `node client01` (12-17).
fn two_nodes() -> Vec<String> {
    vec![
        cluster("web", 2),
        node("cvm", "1", "10.0.0.1", "7777", "web"),
        node("client01", "2", "10.0.0.2", "7777", "web"),
    ]
}

fn with(mut stanzas: Vec<String>, index: usize, from: &str, to: &str) -> Vec<String> {
    assert!(stanzas[index].contains(from), "{from:?} not in {:?}", stanzas[index]);
    stanzas[index] = stanzas[index].replacen(from, to, 1);
    stanzas
}

const REGION_A: &str = "77D95EF51C0149D2823674FCC162CF8B";
const REGION_B: &str = "DCDA2845177F4D59A0F2DCD8DE507CC3";

fn heartbeat(region: &str, cluster: &str) -> String {
    format!("heartbeat:\n\tregion = {region}\n\tcluster = {cluster}\n")
}

/// What the real tool does with a file: refuse it, or read it (we may still refuse it: our
/// checks are stricter, and the table says so case by case).
#[derive(Debug, Clone, Copy, PartialEq)]
enum O2cb {
    Refuses,
    Reads,
}

/// Runs `o2cb --config-file=PATH ARGS`.
fn o2cb(path: &Path, args: &[&str]) -> (bool, String, String) {
    require_tool("o2cb");
    run(Command::new("o2cb").arg(format!("--config-file={}", path.display())).args(args))
}

fn o2cb_ok(path: &Path, args: &[&str]) -> String {
    let (ok, out, err) = o2cb(path, args);
    assert!(ok, "o2cb {args:?} failed on {}:\n{out}\n{err}", path.display());
    out
}

#[test]
fn every_kind_of_bad_cluster_conf_gets_its_own_clear_message() {
    let scratch = Scratch::new("cluster-config-bad");
    let long_name = "n".repeat(65);
    let cases: Vec<(&str, String, O2cb, String)> = vec![
        (
            "two nodes with one number",
            file(&with(two_nodes(), 2, "number = 2", "number = 1")),
            O2cb::Reads,
            format!("{F}:15: node cvm and node client01 both have number 1"),
        ),
        (
            "two nodes with one name",
            file(&with(two_nodes(), 2, "name = client01", "name = cvm")),
            O2cb::Refuses,
            format!("{F}:16: node cvm is defined twice in cluster web (first on line 9)"),
        ),
        (
            "two nodes with one address and port",
            file(&with(two_nodes(), 2, "10.0.0.2", "10.0.0.1")),
            O2cb::Reads,
            format!("{F}:14: node cvm and node client01 both use address 10.0.0.1:7777"),
        ),
        (
            "node_count larger than the node stanzas",
            file(&with(two_nodes(), 0, "node_count = 2", "node_count = 3")),
            O2cb::Reads,
            format!("{F}:2: cluster web has node_count = 3, but 2 node stanzas belong to it"),
        ),
        (
            "node_count smaller than the node stanzas",
            file(&with(two_nodes(), 0, "node_count = 2", "node_count = 1")),
            O2cb::Reads,
            format!("{F}:2: cluster web has node_count = 1, but 2 node stanzas belong to it"),
        ),
        (
            "a node of an unknown cluster",
            file(&with(with(two_nodes(), 2, "cluster = web", "cluster = db"), 0, "= 2", "= 1")),
            O2cb::Reads,
            format!("{F}:17: node client01 belongs to cluster db, but no cluster: stanza defines it (the file defines web)"),
        ),
        (
            "a number above 254",
            file(&with(two_nodes(), 2, "number = 2", "number = 255")),
            O2cb::Reads,
            format!("{F}:15: node client01 has number 255; node numbers go from 0 to 254"),
        ),
        (
            "a number that is not a number",
            file(&with(two_nodes(), 2, "number = 2", "number = two")),
            O2cb::Refuses,
            format!("{F}:15: node client01 has number 'two', which is not a whole number"),
        ),
        (
            "an address with an octet above 255",
            file(&with(two_nodes(), 2, "10.0.0.2", "10.0.0.300")),
            O2cb::Refuses,
            format!("{F}:14: node client01 has ip_address '10.0.0.300', which is not an IPv4 address such as 192.168.1.10"),
        ),
        (
            "a host name where the address goes",
            file(&with(two_nodes(), 2, "10.0.0.2", "client01.example.com")),
            O2cb::Refuses,
            format!(
                "{F}:14: node client01 has ip_address 'client01.example.com', which is not an IPv4 address such as 192.168.1.10"
            ),
        ),
        (
            "the unspecified address",
            file(&with(two_nodes(), 2, "10.0.0.2", "0.0.0.0")),
            O2cb::Reads,
            format!("{F}:14: node client01 has ip_address 0.0.0.0, which is not the address of one host"),
        ),
        (
            "port 0",
            file(&with(two_nodes(), 2, "ip_port = 7777", "ip_port = 0")),
            O2cb::Reads,
            format!("{F}:13: node client01 has ip_port 0; a port goes from 1 to 65534"),
        ),
        (
            "a port above 65534",
            file(&with(two_nodes(), 2, "ip_port = 7777", "ip_port = 70000")),
            O2cb::Reads,
            format!("{F}:13: node client01 has ip_port 70000; a port goes from 1 to 65534"),
        ),
        (
            "an unknown key",
            file(&with(two_nodes(), 1, "\tcluster = web\n", "\tcluster = web\n\tweight = 3\n")),
            O2cb::Reads,
            format!("{F}:11: unknown key 'weight' in a node stanza; its keys are ip_port, ip_address, number, name, cluster"),
        ),
        (
            "a misspelt key",
            file(&with(two_nodes(), 2, "ip_address", "ip_addr")),
            O2cb::Refuses,
            format!(
                "{F}:12: node client01 has no ip_address\n\
                 {F}:14: unknown key 'ip_addr' in a node stanza; its keys are ip_port, ip_address, number, name, cluster"
            ),
        ),
        (
            "an unknown stanza",
            file(&[two_nodes(), vec!["fence:\n\tmethod = reset\n".to_string()]].concat()),
            O2cb::Reads,
            format!("{F}:19: unknown stanza 'fence:'; cluster.conf has only cluster:, node: and heartbeat: stanzas"),
        ),
        (
            "a node without a port",
            file(&with(two_nodes(), 2, "\tip_port = 7777\n", "")),
            O2cb::Refuses,
            format!("{F}:12: node client01 has no ip_port"),
        ),
        (
            "a cluster without a name",
            file(&with(two_nodes(), 0, "\tname = web\n", "")),
            // ocfs2-tools 1.8.7 crashes on this one: not a success either.
            O2cb::Refuses,
            format!("{F}:1: this cluster stanza has no name"),
        ),
        (
            "a key with an empty value",
            file(&with(two_nodes(), 2, "name = client01", "name =")),
            O2cb::Refuses,
            format!("{F}:16: this node stanza has an empty name"),
        ),
        (
            "a key given twice in one stanza",
            file(&with(two_nodes(), 2, "\tcluster = web\n", "\tcluster = web\n\tnumber = 3\n")),
            O2cb::Reads,
            format!("{F}:18: number is given twice in this node stanza (first on line 15)"),
        ),
        (
            "an indented comment",
            file(&with(two_nodes(), 1, "\tnumber = 1\n", "\t# the database host\n\tnumber = 1\n")),
            O2cb::Refuses,
            format!("{F}:8: a comment must start with '#' in the first column; ocfs2-tools refuses an indented comment"),
        ),
        (
            "a blank line inside a stanza",
            file(&with(two_nodes(), 1, "\tnumber = 1\n", "\n\tnumber = 1\n")),
            O2cb::Refuses,
            format!(
                "{F}:9: the blank line 8 ends the stanza of line 5, so 'number = 1' belongs to no stanza; \
                 remove the blank line"
            ),
        ),
        (
            "a line of spaces inside a stanza",
            file(&with(two_nodes(), 0, "\tname = web\n", "  \t \n\tname = web\n")),
            O2cb::Refuses,
            format!(
                "{F}:4: the blank line 3 ends the stanza of line 1, so 'name = web' belongs to no stanza; \
                 remove the blank line"
            ),
        ),
        (
            "an attribute before any stanza",
            format!("\tname = web\n{}", file(&two_nodes())),
            O2cb::Refuses,
            format!(
                "{F}:1: 'name = web' is outside any stanza: a stanza starts with a header such as 'node:' in the first column"
            ),
        ),
        (
            "DOS line endings",
            file(&two_nodes()).replace('\n', "\r\n"),
            O2cb::Refuses,
            format!("{F}:1: the file has DOS line endings (carriage returns), which ocfs2-tools refuses; convert it with dos2unix"),
        ),
        (
            "an indented stanza header",
            file(&with(two_nodes(), 2, "node:", "  node:")),
            O2cb::Refuses,
            format!("{F}:12: the stanza header 'node:' must start in the first column, without indentation"),
        ),
        (
            "text after a stanza header",
            file(&with(two_nodes(), 2, "node:", "node: client01")),
            O2cb::Refuses,
            format!("{F}:12: unexpected 'client01' after 'node:'; a stanza header stands alone on its line"),
        ),
        (
            "a stanza header without its colon",
            file(&with(two_nodes(), 2, "node:", "node")),
            O2cb::Refuses,
            format!("{F}:12: 'node' is not a stanza header: expected a name and ':', such as 'node:'"),
        ),
        (
            "a dash in a key",
            file(&with(two_nodes(), 2, "ip_port", "ip-port")),
            O2cb::Refuses,
            format!(
                "{F}:12: node client01 has no ip_port\n\
                 {F}:13: 'ip-port = 7777' is not 'key = value': expected '=' after 'ip'"
            ),
        ),
        (
            "an unknown heartbeat mode",
            file(&with(two_nodes(), 0, "\tname = web\n", "\theartbeat_mode = disk\n\tname = web\n")),
            O2cb::Refuses,
            format!("{F}:3: cluster web has heartbeat_mode 'disk'; it must be local or global"),
        ),
        (
            "global heartbeat without a region",
            file(&with(two_nodes(), 0, "\tname = web\n", "\theartbeat_mode = global\n\tname = web\n")),
            O2cb::Reads,
            format!("{F}:3: cluster web uses global heartbeat, but no heartbeat: stanza names a region for it"),
        ),
        (
            "a heartbeat region that is not a UUID",
            file(&[two_nodes(), vec![heartbeat("/dev/sdb1", "web")]].concat()),
            O2cb::Reads,
            format!(
                "{F}:20: heartbeat region '/dev/sdb1' of cluster web is not a volume UUID: expected 32 uppercase \
                 hex digits, as mounted.ocfs2 -d prints it"
            ),
        ),
        (
            "a heartbeat region listed twice",
            file(&[two_nodes(), vec![heartbeat(REGION_A, "web"), heartbeat(REGION_A, "web")]].concat()),
            O2cb::Refuses,
            format!("{F}:24: heartbeat region {REGION_A} is listed twice for cluster web (first on line 20)"),
        ),
        (
            "a heartbeat region of an unknown cluster",
            file(&[two_nodes(), vec![heartbeat(REGION_A, "db")]].concat()),
            O2cb::Reads,
            format!(
                "{F}:21: heartbeat region {REGION_A} belongs to cluster db, but no cluster: stanza defines it (the file defines web)"
            ),
        ),
        (
            "a cluster defined twice",
            file(&[two_nodes(), vec![cluster("web", 2)]].concat()),
            O2cb::Refuses,
            format!("{F}:21: cluster web is defined twice (first on line 3)"),
        ),
        (
            "a cluster name with a dash",
            file(&two_nodes()).replace("web", "web-1"),
            O2cb::Reads,
            format!(
                "{F}:3: cluster name 'web-1' is not valid: use 1 to 16 letters and digits, as o2cb and mkfs.ocfs2 require"
            ),
        ),
        (
            "a node name with a space",
            file(&with(two_nodes(), 2, "name = client01", "name = client 01")),
            O2cb::Reads,
            format!(
                "{F}:16: node name 'client 01' is not valid: a node is named by its host name, 1 to 64 letters, \
                 digits, '.', '-' or '_'"
            ),
        ),
        (
            "a node name longer than 64 characters",
            file(&with(two_nodes(), 2, "name = client01", &format!("name = {long_name}"))),
            O2cb::Reads,
            format!(
                "{F}:16: node name '{}...' is not valid: a node is named by its host name, 1 to 64 letters, \
                 digits, '.', '-' or '_'",
                &long_name[..40]
            ),
        ),
        (
            "a node_count that is not a number",
            file(&with(two_nodes(), 0, "node_count = 2", "node_count = two")),
            O2cb::Refuses,
            format!("{F}:2: cluster web has node_count 'two', which is not a whole number"),
        ),
        (
            "several problems at once, each on its line",
            file(&with(with(two_nodes(), 1, "10.0.0.1", "10.0.0.256"), 2, "number = 2", "number = 300")),
            O2cb::Refuses,
            format!(
                "{F}:7: node cvm has ip_address '10.0.0.256', which is not an IPv4 address such as 192.168.1.10\n\
                 {F}:15: node client01 has number 300; node numbers go from 0 to 254"
            ),
        ),
    ];
    assert!(cases.len() >= 20);

    let mut failures = Vec::new();
    for (what, text, referee, expected) in &cases {
        match ClusterConfig::check(text, F) {
            Ok(_) => failures.push(format!("{what}: accepted\n{text}")),
            Err(e) => {
                if e.to_string() != *expected {
                    failures.push(format!("{what}:\n  expected: {expected}\n  got:      {e}"));
                }
                if e.errno() != EINVAL {
                    failures.push(format!("{what}: errno {} instead of EINVAL", e.errno()));
                }
            }
        }
        let path = scratch.path("cluster.conf");
        std::fs::write(&path, text).unwrap();
        let (ok, out, err) = o2cb(&path, &["list-clusters"]);
        let seen = if ok { O2cb::Reads } else { O2cb::Refuses };
        if seen != *referee {
            failures.push(format!("{what}: the table says o2cb {referee:?}, but it {seen:?}: {out}{err}"));
        }
        // The same file through load(): the same message, with the real path.
        let loaded = ClusterConfig::load(&path).map(|_| ()).map_err(|e| e.to_string());
        let expected_loaded = expected.replace(F, &path.display().to_string());
        if loaded != Err(expected_loaded.clone()) {
            failures.push(format!("{what}: load gave {loaded:?}, expected {expected_loaded}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Files written by hand in every layout ocfs2-tools accepts.
fn good_files() -> Vec<(&'static str, String)> {
    vec![
        ("tabs, as o2cb writes", file(&two_nodes())),
        (
            "spaces, no blanks around '=', trailing blanks",
            "cluster:   \n    node_count=2 \n  name=web\t\n\nnode:\n ip_port=7777\n ip_address =10.0.0.1\n number= 1\n \
             name = cvm  \n cluster\t=\tweb\n\nnode:\n\t ip_port = 7777\n\t ip_address = 10.0.0.2\n\t number = 2\n\t \
             name = client01\n\t cluster = web\n"
                .to_string(),
        ),
        (
            "comments, runs of blank lines, no blank line between stanzas, no final newline",
            "# cluster.conf for the web farm\n\n\n\
             node:\n# the database host\n\tip_port = 7777\n\tip_address = 10.0.0.1\n\tnumber = 1\n\tname = cvm\n\tcluster = web\n\
             node:\n\tip_port = 7778\n\tip_address = 10.0.0.1\n\tnumber = 2\n\tname = client01\n\tcluster = web\n\
             # end of nodes\n\n\n\
             cluster:\n\tnode_count = 2\n\tname = web"
                .to_string(),
        ),
        (
            "several clusters with interleaved nodes, global heartbeat written in capitals",
            file(&[
                node("a1", "0", "192.168.1.1", "7777", "alpha"),
                node("b1", "0", "192.168.2.1", "7777", "beta"),
                cluster("beta", 2).replace("\tname", "\theartbeat_mode = GLOBAL\n\tname"),
                heartbeat(REGION_A, "beta"),
                node("a2", "3", "192.168.1.2", "7777", "alpha"),
                cluster("alpha", 2),
                node("b2", "254", "192.168.2.2", "65534", "beta"),
                heartbeat(REGION_B, "beta"),
            ]),
        ),
        ("an empty cluster", cluster("lonely", 0)),
    ]
}

/// What `o2cb list-cluster` prints for each cluster of `path`, read back with our parser into
/// one configuration.
fn as_o2cb_sees_it(path: &Path, ours: &ClusterConfig) -> ClusterConfig {
    let mut seen = ClusterConfig::empty("o2cb list-cluster");
    for c in &ours.clusters {
        let out = o2cb_ok(path, &["list-cluster", &c.name]);
        let part = ClusterConfig::check(&out, "o2cb list-cluster")
            .unwrap_or_else(|e| panic!("cannot read o2cb's listing of {}:\n{out}\n{e}", c.name));
        seen.clusters.extend(part.clusters);
        seen.nodes.extend(part.nodes);
        seen.heartbeats.extend(part.heartbeats);
    }
    seen
}

/// `config` with its stanzas grouped by cluster, in cluster order, as listing cluster by cluster
/// gives them.
fn grouped(config: &ClusterConfig) -> ClusterConfig {
    let mut out = ClusterConfig::empty("grouped");
    for c in &config.clusters {
        out.clusters.push(c.clone());
        out.nodes.extend(config.nodes_of(&c.name).cloned());
        out.heartbeats.extend(config.heartbeats_of(&c.name).cloned());
    }
    out
}

#[test]
fn good_files_read_the_same_by_us_and_by_o2cb() {
    let scratch = Scratch::new("cluster-config-good");
    for (what, text) in good_files() {
        let ours = ClusterConfig::check(&text, F).unwrap_or_else(|e| panic!("{what}: refused:\n{e}"));
        let path = scratch.path("cluster.conf");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(as_o2cb_sees_it(&path, &ours), grouped(&ours), "{what}");
        let listed = o2cb_ok(&path, &["list-clusters"]);
        let names: Vec<&str> = ours.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut listed: Vec<&str> = listed.lines().collect();
        listed.sort_unstable();
        let mut names_sorted = names.clone();
        names_sorted.sort_unstable();
        assert_eq!(listed, names_sorted, "{what}");
    }
    let several = ClusterConfig::check(&good_files()[3].1, F).unwrap();
    assert_eq!(several.cluster("beta").unwrap().heartbeat_mode, HeartbeatMode::Global);
    assert_eq!(several.heartbeats_of("beta").count(), 2);
    assert_eq!(several.node_by_number("beta", 254).unwrap().ip_port, 65534);
    assert_eq!(several.node_by_name("alpha", "a2").unwrap().lines.of("number"), Some(27));
}

#[test]
fn what_we_write_reads_back_equal_and_o2cb_reads_it_the_same() {
    let scratch = Scratch::new("cluster-config-roundtrip");
    let path = scratch.path("cluster.conf");
    let mut configs: Vec<ClusterConfig> =
        good_files().iter().map(|(_, text)| ClusterConfig::check(text, F).unwrap()).collect();
    let s = seed();
    eprintln!("seed {s} (replay with OCFS2_TEST_SEED={s})");
    let mut rng = Rng::new(s);
    for _ in 0..25 {
        configs.push(random_config(&mut rng));
    }
    for config in configs {
        let text = config.to_string();
        let again = ClusterConfig::check(&text, F).unwrap_or_else(|e| panic!("our own output refused:\n{text}\n{e}"));
        assert_eq!(again, config, "{text}");
        assert_eq!(again.to_string(), text);
        config.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(as_o2cb_sees_it(&path, &config), grouped(&config), "seed {s}:\n{text}");
    }
}

/// A valid configuration of 1-3 clusters with random nodes and regions, made through the
/// editing calls.
fn random_config(rng: &mut Rng) -> ClusterConfig {
    let mut c = ClusterConfig::empty(F);
    let clusters = 1 + rng.below(3);
    for ci in 0..clusters {
        let name = format!("c{ci}x{}", rng.below(1000));
        c.add_cluster(&name).unwrap();
        for ni in 0..rng.below(12) {
            let ip = Ipv4Addr::new(10, ci as u8, (rng.below(3)) as u8, 1 + rng.below(250) as u8);
            let port = if rng.below(2) == 0 { None } else { Some(1 + rng.below(65534) as u16) };
            let number = if rng.below(2) == 0 { None } else { Some(rng.below(255) as u8) };
            let host = format!("host{ni}.{}", ["lab", "example-net", "x_y"][rng.below(3) as usize]);
            // Clashes are refused; the configuration stays valid either way.
            let _ = c.add_node(&name, &host, ip, port, number);
        }
        for _ in 0..rng.below(4) {
            let region: String = (0..32).map(|_| b"0123456789ABCDEF"[rng.below(16) as usize] as char).collect();
            c.add_heartbeat(&name, &region).unwrap();
        }
        if rng.below(2) == 0 && c.heartbeats_of(&name).count() > 0 {
            c.set_heartbeat_mode(&name, HeartbeatMode::Global).unwrap();
        }
    }
    c.validate().unwrap_or_else(|e| panic!("random config invalid:\n{c}\n{e}"));
    c
}

#[test]
fn editing_matches_o2cb_add_and_remove_commands() {
    let scratch = Scratch::new("cluster-config-edit");
    let path = scratch.path("cluster.conf");
    std::fs::write(&path, "").unwrap();
    let mut ours = ClusterConfig::empty(F);

    o2cb_ok(&path, &["add-cluster", "web"]);
    ours.add_cluster("web").unwrap();
    o2cb_ok(&path, &["add-node", "--ip", "10.0.0.1", "--number", "2", "web", "cvm"]);
    ours.add_node("web", "cvm", Ipv4Addr::new(10, 0, 0, 1), None, Some(2)).unwrap();
    // No number: both take the lowest free one (0, then 1, then 3).
    for (name, ip) in [("client01", "10.0.0.2"), ("client02", "10.0.0.3"), ("client03", "10.0.0.4")] {
        o2cb_ok(&path, &["add-node", "--ip", ip, "--port", "7000", "web", name]);
        ours.add_node("web", name, ip.parse().unwrap(), Some(7000), None).unwrap();
    }
    o2cb_ok(&path, &["remove-node", "web", "client01"]);
    ours.remove_node("web", "client01").unwrap();
    o2cb_ok(&path, &["add-cluster", "db"]);
    ours.add_cluster("db").unwrap();
    o2cb_ok(&path, &["add-heartbeat", "db", REGION_A]);
    ours.add_heartbeat("db", REGION_A).unwrap();
    o2cb_ok(&path, &["heartbeat-mode", "db", "global"]);
    ours.set_heartbeat_mode("db", HeartbeatMode::Global).unwrap();
    o2cb_ok(&path, &["add-node", "--ip", "10.1.0.1", "db", "cvm"]);
    ours.add_node("db", "cvm", Ipv4Addr::new(10, 1, 0, 1), None, None).unwrap();

    let theirs = ClusterConfig::load(&path).unwrap_or_else(|e| panic!("cannot read o2cb's file: {e}"));
    assert_eq!(grouped(&theirs), grouped(&ours), "o2cb wrote:\n{}", std::fs::read_to_string(&path).unwrap());
    assert_eq!(ours.node_by_name("web", "client03").unwrap().number, 3);

    // Both refuse the same mistakes.
    for (args, ours_err) in [
        (vec!["add-node", "--ip", "10.0.0.9", "--number", "2", "web", "x"], {
            ours.add_node("web", "x", Ipv4Addr::new(10, 0, 0, 9), None, Some(2)).unwrap_err()
        }),
        (vec!["add-node", "--ip", "10.0.0.9", "web", "cvm"], {
            ours.add_node("web", "cvm", Ipv4Addr::new(10, 0, 0, 9), None, None).unwrap_err()
        }),
        (vec!["add-node", "--ip", "10.0.0.9", "nosuch", "x"], {
            ours.add_node("nosuch", "x", Ipv4Addr::new(10, 0, 0, 9), None, None).unwrap_err()
        }),
        (vec!["add-cluster", "web"], ours.add_cluster("web").unwrap_err()),
        (vec!["remove-node", "web", "nobody"], ours.remove_node("web", "nobody").unwrap_err()),
        (vec!["add-cluster", "bad-name"], ours.add_cluster("bad-name").unwrap_err()),
    ] {
        // o2cb 1.8.7 reports a duplicate cluster on stderr but exits 0: a message is a refusal.
        let (ok, _, err) = o2cb(&path, &args);
        assert!(!ok || err.contains("o2cb: "), "o2cb {args:?} succeeded but we refuse it: {ours_err}");
    }
    assert_eq!(
        ours.add_node("web", "x", Ipv4Addr::new(10, 0, 0, 9), None, Some(2)).unwrap_err().to_string(),
        format!("{F}: number 2 is taken by node cvm of cluster web")
    );
    assert_eq!(
        ours.remove_node("web", "nobody").unwrap_err().to_string(),
        format!("{F}: cluster web has no node named nobody")
    );
    // The refused calls changed nothing.
    assert_eq!(grouped(&theirs), grouped(&ours));
}

#[test]
fn local_node_is_found_by_name_or_host_name_and_a_missing_one_is_named() {
    let mut c = ClusterConfig::check(&file(&two_nodes()), F).unwrap();
    assert_eq!(c.local_node(Some("client01")).unwrap().number, 2);
    assert_eq!(c.local_node(Some("CVM.example.com")).unwrap().number, 1);
    assert_eq!(c.local_node_in("web", Some("cvm")).unwrap().number, 1);
    let e = c.local_node(Some("client02")).unwrap_err();
    assert_eq!(e.to_string(), format!("{F}: no node is named client02; the nodes are cvm, client01"));
    assert_eq!(e.errno(), ENOENT);
    assert_eq!(c.local_node_in("db", None).unwrap_err().to_string(), format!("{F}: there is no cluster named db"));

    let host = host_name().unwrap();
    let short = host.split('.').next().unwrap().to_string();
    if c.local_node(None).is_ok() {
        panic!("this host ({host}) is unexpectedly named like a test node");
    }
    assert_eq!(
        c.local_node(None).unwrap_err().to_string(),
        format!("{F}: no node is named {host} (the name of this host); the nodes are cvm, client01")
    );
    c.add_node("web", &short, Ipv4Addr::new(10, 0, 0, 3), None, None).unwrap();
    assert_eq!(c.local_node(None).unwrap().name, short);

    // The same node name in two clusters needs the cluster named.
    c.add_cluster("db").unwrap();
    c.add_node("db", "cvm", Ipv4Addr::new(10, 1, 0, 1), None, None).unwrap();
    assert_eq!(
        c.local_node(Some("cvm")).unwrap_err().to_string(),
        format!("{F}: node cvm is in more than one cluster (web, db); say which cluster to use")
    );
    assert_eq!(c.local_node_in("db", Some("cvm")).unwrap().ip_address, Ipv4Addr::new(10, 1, 0, 1));
}

#[test]
fn kernel_rule_refuses_two_nodes_on_one_address() {
    // One address, two ports: `validate` accepts it; only the kernel rule refuses it.
    let text = file(&with(with(two_nodes(), 2, "10.0.0.2", "10.0.0.1"), 2, "7777", "7778"));
    let c = ClusterConfig::check(&text, F).unwrap();
    let e = c.validate_for_kernel().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{F}:14: node cvm and node client01 both use address 10.0.0.1; the Linux kernel tells nodes apart \
             by address alone, so a kernel node cannot join this cluster"
        )
    );
}

#[test]
fn missing_or_unreadable_files_are_errors_with_the_os_errno() {
    let scratch = Scratch::new("cluster-config-io");
    let missing = scratch.path("nope.conf");
    let e = ClusterConfig::load(&missing).unwrap_err();
    assert_eq!(e.errno(), ENOENT);
    assert!(e.to_string().starts_with(&format!("{}: cannot read the file: ", missing.display())), "{e}");

    let latin1 = scratch.path("latin1.conf");
    std::fs::write(&latin1, b"cluster:\n\tnode_count = 0\n\tname = caf\xe9\n").unwrap();
    let e = ClusterConfig::load(&latin1).unwrap_err();
    assert_eq!(e.to_string(), format!("{}:3: byte 0xe9 is not UTF-8 text", latin1.display()));

    let e = Timeouts::load(Some(&missing), |_| None).unwrap_err();
    assert_eq!(e.errno(), ENOENT);
}

/// Mutations of a good file: lines dropped, doubled, swapped, cut, and characters the parser
/// must survive.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let pieces = [
        "\t",
        " ",
        "#",
        ":",
        "=",
        "\r",
        "\0",
        "\\",
        "é",
        "名",
        "\u{7f}",
        "node:",
        "cluster:",
        "heartbeat:",
        "\tname = ",
        "\tnumber = 999999999999999999999999",
        "\tip_port = 65535",
        "\tip_address = 1.2.3",
        "\n",
        "\n\n",
        "+",
        "-1",
    ];
    for _ in 0..1 + rng.below(4) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = rng.below(lines.len() as u64) as usize;
        match rng.below(7) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                let j = rng.below(lines.len() as u64) as usize;
                lines.swap(i, j);
            }
            3 => {
                let cut = lines[i].char_indices().map(|(k, _)| k).nth(rng.below(8) as usize).unwrap_or(0);
                lines[i].truncate(cut);
            }
            4 => {
                let piece = pieces[rng.below(pieces.len() as u64) as usize];
                let at = lines[i].char_indices().map(|(k, _)| k).nth(rng.below(20) as usize).unwrap_or(lines[i].len());
                lines[i].insert_str(at, piece);
            }
            5 => {
                let digit = char::from(b'0' + rng.below(10) as u8);
                lines[i] = lines[i].replace(|c: char| c.is_ascii_digit(), &digit.to_string());
            }
            _ => {
                let piece = pieces[rng.below(pieces.len() as u64) as usize];
                lines.insert(i, piece.to_string());
            }
        }
    }
    lines.join("\n")
}

/// Text from the parser's own alphabet, with no structure at all.
fn noise(rng: &mut Rng) -> String {
    let alphabet: Vec<char> = "ab_09:=# \t\n\r\\.-é\u{0}\u{1}nodeclusterheartbeatnameipport".chars().collect();
    (0..rng.below(300)).map(|_| alphabet[rng.below(alphabet.len() as u64) as usize]).collect()
}

#[test]
fn fuzzed_files_never_make_the_parser_panic() {
    let s = seed();
    eprintln!("seed {s} (replay with OCFS2_TEST_SEED={s})");
    let mut rng = Rng::new(s);
    let bases: Vec<String> = good_files().into_iter().map(|(_, t)| t).collect();
    let mut accepted = 0;
    for round in 0..20000 {
        let text = if rng.below(4) == 0 {
            noise(&mut rng)
        } else {
            let base = &bases[rng.below(bases.len() as u64) as usize];
            mutate(&mut rng, base)
        };
        let outcome = std::panic::catch_unwind(|| {
            let Ok(config) = ClusterConfig::parse(&text, F) else { return false };
            let valid = config.validate().is_ok();
            let _ = config.validate_for_kernel();
            let _ = config.local_node(Some("cvm"));
            // Whatever parses writes back to text that parses to the same configuration.
            let again = ClusterConfig::parse(&config.to_string(), F).expect("our own output is refused");
            assert_eq!(again, config);
            valid
        });
        match outcome {
            Ok(valid) => accepted += usize::from(valid),
            Err(_) => panic!("seed {s}, round {round}: the parser panicked on {text:?}"),
        }
    }
    // The mutations keep some files valid, so the valid paths were exercised too.
    assert!(accepted > 100, "only {accepted} fuzzed files were valid (seed {s})");
}

#[test]
fn timeouts_come_from_the_file_then_the_environment() {
    let scratch = Scratch::new("cluster-config-timeouts");
    let path = scratch.path("o2cb");
    std::fs::write(
        &path,
        "# settings\nO2CB_ENABLED=true\nO2CB_STACK=o2cb\nO2CB_BOOTCLUSTER=web\n\
         O2CB_HEARTBEAT_THRESHOLD=7\nO2CB_IDLE_TIMEOUT_MS=\"10000\"\nexport O2CB_KEEPALIVE_DELAY_MS='1000'\n\
         O2CB_RECONNECT_DELAY_MS=   # unset: the default\nO2CB_HEARTBEAT_INTERVAL_MS=1000 # ours\n",
    )
    .unwrap();
    let t = Timeouts::load(Some(&path), |_| None).unwrap();
    assert_eq!(
        t,
        Timeouts {
            heartbeat_threshold: 7,
            heartbeat_interval_ms: 1000,
            idle_timeout_ms: 10000,
            keepalive_delay_ms: 1000,
            reconnect_delay_ms: 2000
        }
    );
    assert_eq!(O2cbDefaults::load(&path).unwrap().bootcluster().unwrap(), Some("web"));

    // Fast test timeouts through the environment.
    let env = |k: &str| match k {
        "O2CB_HEARTBEAT_INTERVAL_MS" => Some("100".to_string()),
        "O2CB_HEARTBEAT_THRESHOLD" => Some("5".to_string()),
        "O2CB_IDLE_TIMEOUT_MS" => Some("".to_string()),
        _ => None,
    };
    let t = Timeouts::load(Some(&path), env).unwrap();
    assert_eq!((t.heartbeat_threshold, t.heartbeat_interval_ms, t.idle_timeout_ms), (5, 100, 10000));
    assert_eq!(t.dead_ms(), 500);
    assert_eq!(t.max_write_timeout_ms(), 400);
    assert_eq!(t.quorum_delay_ms(), 700);
    assert!(t.max_write_timeout_ms() < t.dead_ms());

    let e = Timeouts::load(Some(&path), |k| (k == "O2CB_KEEPALIVE_DELAY_MS").then(|| "soon".to_string())).unwrap_err();
    assert_eq!(e.to_string(), "environment: O2CB_KEEPALIVE_DELAY_MS=soon is not a whole number of milliseconds");
    let e = Timeouts::load(Some(&path), |k| (k == "O2CB_HEARTBEAT_THRESHOLD").then(|| "2".to_string())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "o2cb timeouts: O2CB_HEARTBEAT_THRESHOLD = 2 (from the environment) is too small: the kernel ignores a \
         dead threshold below 3"
    );
    let e = Timeouts::load(Some(&path), |k| (k == "O2CB_IDLE_TIMEOUT_MS").then(|| "1000".to_string())).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "o2cb timeouts: O2CB_IDLE_TIMEOUT_MS = 1000 (from the environment) must be larger than \
             O2CB_KEEPALIVE_DELAY_MS = 1000 (from {}:7): the kernel refuses an idle timeout that a keepalive \
             cannot prevent",
            path.display()
        )
    );
    let e = Timeouts::load(Some(&path), |k| (k == "O2CB_RECONNECT_DELAY_MS").then(|| "0".to_string())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "o2cb timeouts: O2CB_RECONNECT_DELAY_MS = 0 (from the environment) must be from 1 to 4294967294"
    );
    let huge = |k: &str| (k == "O2CB_HEARTBEAT_INTERVAL_MS").then(|| "1000000000".to_string());
    let e = Timeouts::load(Some(&path), huge).unwrap_err();
    assert_eq!(
        e.to_string(),
        "o2cb timeouts: O2CB_HEARTBEAT_THRESHOLD = 7 (from ".to_string()
            + &path.display().to_string()
            + ":5) times O2CB_HEARTBEAT_INTERVAL_MS = 1000000000 (from the environment) is too long a time to wait \
               for a dead node"
    );
}

/// The settings file is a shell script: bash sourcing it is the referee for what each variable
/// holds.
#[test]
fn settings_file_values_agree_with_bash_sourcing_it() {
    let scratch = Scratch::new("cluster-config-sysconfig");
    let tricky = scratch.path("o2cb");
    std::fs::write(
        &tricky,
        "#!/bin/sh\n# O2CB_HEARTBEAT_THRESHOLD=99 (a comment)\nO2CB_HEARTBEAT_THRESHOLD=61\n\
         O2CB_IDLE_TIMEOUT_MS='60000'\n  export O2CB_KEEPALIVE_DELAY_MS=\"5000\" ; \n\
         if false; then\n  true\nfi\nO2CB_RECONNECT_DELAY_MS=3000 # comment\nO2CB_HEARTBEAT_THRESHOLD=62\n",
    )
    .unwrap();
    let mut files = vec![tricky.clone()];
    // The file the ocfs2-tools package installed on this machine, if any.
    for system in ["/etc/default/o2cb", "/etc/sysconfig/o2cb"] {
        if Path::new(system).is_file() {
            files.push(system.into());
        }
    }
    let names = [
        "O2CB_HEARTBEAT_THRESHOLD",
        "O2CB_IDLE_TIMEOUT_MS",
        "O2CB_KEEPALIVE_DELAY_MS",
        "O2CB_RECONNECT_DELAY_MS",
        "O2CB_BOOTCLUSTER",
    ];
    for path in files {
        let script = format!(
            ". '{}'; {}",
            path.display(),
            names.iter().map(|n| format!("echo \"{n}=${n}\";")).collect::<String>()
        );
        let (ok, out, err) = run(Command::new("bash").arg("-c").arg(script).env_clear());
        assert!(ok, "bash could not source {}: {err}", path.display());
        let ours = O2cbDefaults::load(&path).unwrap();
        for line in out.lines() {
            let (name, value) = line.split_once('=').unwrap();
            let mine = ours.get(name).unwrap().map(|(v, _)| v.to_string()).unwrap_or_default();
            assert_eq!(mine, value, "{name} in {}", path.display());
        }
    }
    let t = Timeouts::load(Some(&tricky), |_| None).unwrap();
    assert_eq!(
        (t.heartbeat_threshold, t.idle_timeout_ms, t.keepalive_delay_ms, t.reconnect_delay_ms),
        (62, 60000, 5000, 3000)
    );
}
