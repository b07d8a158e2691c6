use super::*;

const BASE: &str = "
management:
  controllers: [192.0.2.10, 2001:db8:c::/64]
  channel_port: 7443
  extra_tcp_ports: [22]
";

fn spec(rules: &str) -> Result<FirewallSpec, FirewallError> {
    FirewallSpec::from_yaml(&format!("{BASE}rules:\n{rules}"))
}

fn err(rules: &str) -> String {
    spec(rules).expect_err("must be rejected").to_string()
}

#[test]
fn full_example_parses_and_renders() {
    let s = spec(
        "
  - { action: accept, protocol: tcp, ports: [22, \"8000-8080\"], sources: [198.51.100.0/24, 2001:db8:1::/48], comment: ssh and web }
  - { action: reject, protocol: udp, ports: [53], interface: eth0 }
  - { action: drop, sources: [203.0.113.7] }
  - { action: accept, protocol: icmp }
  - { action: drop, direction: outbound, protocol: tcp, ports: [25], destinations: [0.0.0.0/0] }
",
    )
    .expect("valid");
    assert_eq!(s.rules.len(), 5);
    let rs = render(&s).expect("enabled");
    let text = rs.table_script();
    // Defaults come first, then management, then user rules.
    let input = &rs.chains[0];
    assert_eq!(input.name, "input");
    assert_eq!(input.policy, "drop");
    let tags: Vec<String> = input.rules.iter().map(|r| r.tag.to_string()).collect();
    assert_eq!(
        tags,
        [
            "default:established",
            "default:loopback",
            "default:icmp",
            "default:icmpv6",
            "default:icmpv6-nd",
            "default:icmpv6-mld",
            "default:invalid",
            "mgmt/v4",
            "mgmt/v6",
            "rule:0/v4",
            "rule:0/v6",
            "rule:1",
            "rule:2/v4",
            "rule:3",
            "default:policy",
        ]
    );
    let r0 = &input.rules[9];
    assert!(
        r0.statement
            .starts_with("tcp dport { 22, 8000-8080 } ip saddr @r0_src4_"),
        "{}",
        r0.statement
    );
    assert!(r0.statement.ends_with("counter accept"));
    assert_eq!(r0.nft_comment(), "rule:0/v4 ssh and web");
    assert_eq!(
        input.rules[11].statement,
        "iifname \"eth0\" udp dport { 53 } counter reject with icmpx port-unreachable"
    );
    assert!(input.rules[7].statement.starts_with("ip saddr @mgmt4_"));
    assert!(input.rules[7]
        .statement
        .ends_with("tcp dport { 22, 7443 } counter accept"));
    // Outbound rule gives an output chain with policy accept.
    let output = &rs.chains[1];
    assert_eq!((output.name, output.policy), ("output", "accept"));
    assert!(output
        .rules
        .iter()
        .any(|r| r.statement.contains("tcp dport { 25 } ip daddr @r4_dst4_")));
    assert!(text.contains("type filter hook input priority filter; policy drop;"));
    assert!(text.contains("flags interval"));
    assert!(text.contains("elements = { 198.51.100.0/24 }"));
}

#[test]
fn replace_script_touches_only_hostd_table() {
    let rs = render(&spec("  - { action: accept, protocol: tcp, ports: [80] }").expect("valid"))
        .expect("enabled");
    let script = rs.replace_script();
    let mut lines = script.lines();
    assert_eq!(lines.next(), Some("add table inet hostd"));
    assert_eq!(lines.next(), Some("delete table inet hostd"));
    assert_eq!(lines.next(), Some("table inet hostd {"));
    assert!(!script.contains("flush ruleset"));
    assert_eq!(script.matches("table ").count(), 3);
    assert_eq!(
        remove_script(),
        "add table inet hostd\ndelete table inet hostd\n"
    );
}

#[test]
fn disabled_renders_nothing_and_needs_no_management() {
    let s = FirewallSpec::from_yaml("enabled: false\n").expect("valid");
    assert!(!s.enabled);
    assert!(render(&s).is_none());
}

#[test]
fn port_out_of_range_names_path_and_value() {
    let e = err("  - { action: accept, protocol: tcp, ports: [22, 70000] }");
    assert!(
        e.starts_with("firewall.rules[0].ports[1]: 70000 is not a port (1..=65535)"),
        "{e}"
    );
}

#[test]
fn third_rule_port_error_path() {
    let e = err("  - { action: accept }\n  - { action: accept }\n  - { action: accept, protocol: tcp, ports: [70000] }");
    assert!(
        e.starts_with("firewall.rules[2].ports[0]: 70000 is not a port (1..=65535)"),
        "{e}"
    );
}

#[test]
fn port_zero_negative_and_garbage() {
    assert!(err("  - { action: accept, protocol: tcp, ports: [0] }")
        .starts_with("firewall.rules[0].ports[0]: 0 is not a port"));
    assert!(err("  - { action: accept, protocol: tcp, ports: [-5] }")
        .starts_with("firewall.rules[0].ports[0]: -5 is not a port"));
    let e = err("  - { action: accept, protocol: tcp, ports: [ssh] }");
    assert!(
        e.starts_with("firewall.rules[0].ports[0]: \"ssh\" is not a port or a port range"),
        "{e}"
    );
    let e = err("  - { action: accept, protocol: tcp, ports: [\"1-70000\"] }");
    assert!(
        e.starts_with("firewall.rules[0].ports[0]: 70000 is not a port"),
        "{e}"
    );
}

#[test]
fn reversed_range_rejected() {
    let e = err("  - { action: accept, protocol: tcp, ports: [\"9000-8000\"] }");
    assert!(
        e.starts_with("firewall.rules[0].ports[0]: \"9000-8000\" is a reversed port range"),
        "{e}"
    );
}

#[test]
fn unknown_protocol_rejected() {
    let e = err("  - { action: accept, protocol: sctp }");
    assert!(
        e.starts_with("firewall.rules[0].protocol: unknown variant `sctp`"),
        "{e}"
    );
}

#[test]
fn unknown_action_and_field_rejected() {
    let e = err("  - { action: allow }");
    assert!(
        e.starts_with("firewall.rules[0].action: unknown variant `allow`"),
        "{e}"
    );
    let e = err("  - { action: accept, port: [22] }");
    assert!(
        e.starts_with("firewall.rules[0].port: unknown field `port`, expected one of `action`"),
        "{e}"
    );
    let e = FirewallSpec::from_yaml("enable: true\n")
        .expect_err("unknown")
        .to_string();
    assert!(
        e.starts_with("firewall.enable: unknown field `enable`"),
        "{e}"
    );
}

#[test]
fn invalid_cidrs_rejected() {
    let e = err("  - { action: accept, sources: [10.0.0.300/24] }");
    assert!(
        e.starts_with(
            "firewall.rules[0].sources[0]: \"10.0.0.300/24\" is not an IPv4 or IPv6 CIDR"
        ),
        "{e}"
    );
    let e = err("  - { action: accept, sources: [10.0.0.0/33] }");
    assert!(
        e.starts_with("firewall.rules[0].sources[0]: \"10.0.0.0/33\""),
        "{e}"
    );
    let e = err("  - { action: accept, destinations: [\"2001:db8::1/48\"] }");
    assert!(e.starts_with("firewall.rules[0].destinations[0]: \"2001:db8::1/48\" has host bits set (did you mean 2001:db8::/48?)"), "{e}");
    let e = FirewallSpec::from_yaml("management: { controllers: [bogus], channel_port: 1 }")
        .expect_err("bad");
    assert!(
        e.to_string()
            .starts_with("firewall.management.controllers[0]: \"bogus\""),
        "{e}"
    );
}

#[test]
fn ports_need_tcp_or_udp() {
    for proto in ["icmp", "any", "icmpv6"] {
        let e = err(&format!(
            "  - {{ action: accept, protocol: {proto}, ports: [22] }}"
        ));
        assert_eq!(e, format!("firewall.rules[0].ports: ports need protocol tcp or udp, but protocol is {proto} (ports: 22)"));
    }
    let e = err("  - { action: accept, ports: [22] }");
    assert!(e.contains("protocol is any"), "{e}");
}

#[test]
fn icmp_family_mismatch_rejected() {
    let e =
        err("  - { action: accept, protocol: icmp, sources: [192.0.2.0/24, \"2001:db8::/32\"] }");
    assert_eq!(e, "firewall.rules[0].sources[1]: 2001:db8::/32 is IPv6 but protocol icmp is IPv4-only (use icmpv6)");
    let e = err("  - { action: accept, protocol: icmpv6, destinations: [192.0.2.0/24] }");
    assert!(
        e.starts_with(
            "firewall.rules[0].destinations[0]: 192.0.2.0/24 is IPv4 but protocol icmpv6"
        ),
        "{e}"
    );
}

#[test]
fn disjoint_families_rejected() {
    let e =
        err("  - { action: accept, sources: [192.0.2.0/24], destinations: [\"2001:db8::/32\"] }");
    assert!(
        e.starts_with("firewall.rules[0].destinations: share no address family with sources"),
        "{e}"
    );
}

#[test]
fn management_required_when_enabled() {
    let e = FirewallSpec::from_yaml("rules: []")
        .expect_err("no management")
        .to_string();
    assert!(
        e.starts_with("firewall.management: is required when the firewall is enabled"),
        "{e}"
    );
    let e = FirewallSpec::from_yaml("management: { controllers: [], channel_port: 7443 }")
        .expect_err("empty")
        .to_string();
    assert!(
        e.starts_with("firewall.management.controllers: is empty"),
        "{e}"
    );
    let e = FirewallSpec::from_yaml("management: { controllers: [192.0.2.1], channel_port: 0 }")
        .expect_err("port 0")
        .to_string();
    assert!(
        e.starts_with("firewall.management.channel_port: 0 is not a port"),
        "{e}"
    );
    let e =
        FirewallSpec::from_yaml("management: { controllers: [192.0.2.1], channel_port: \"1-2\" }")
            .expect_err("range")
            .to_string();
    assert!(
        e.starts_with("firewall.management.channel_port: \"1-2\" is a range"),
        "{e}"
    );
}

#[test]
fn all_validation_errors_reported_together() {
    let s: FirewallSpec = serde_norway::from_str(
        "rules:\n  - { action: accept, protocol: icmp, ports: [1] }\n  - { action: drop, protocol: udp }\n  - { action: drop, protocol: any, ports: [2] }",
    )
    .expect("types are fine");
    let e = s.validate().expect_err("invalid");
    let paths: Vec<String> = e.fields().into_iter().map(|f| f.path).collect();
    assert_eq!(
        paths,
        [
            "firewall.management",
            "firewall.rules[0].ports",
            "firewall.rules[2].ports"
        ]
    );
}

#[test]
fn interface_and_comment_checked() {
    let e = err("  - { action: accept, interface: averyveryverylongname0 }");
    assert!(
        e.starts_with(
            "firewall.rules[0].interface: \"averyveryverylongname0\" is not an interface name"
        ),
        "{e}"
    );
    let e = err("  - { action: accept, interface: \"eth 0\" }");
    assert!(e.starts_with("firewall.rules[0].interface:"), "{e}");
    let e = err("  - { action: accept, comment: 'say \"hi\"' }");
    assert!(e.starts_with("firewall.rules[0].comment:"), "{e}");
    let long = "x".repeat(COMMENT_MAX + 1);
    let e = err(&format!("  - {{ action: accept, comment: {long} }}"));
    assert!(e.contains("longer than 96 bytes"), "{e}");
    let s = spec("  - { action: accept, interface: \"eth*\" }").expect("wildcard ok");
    let rs = render(&s).expect("enabled");
    assert!(rs.chains[0]
        .rules
        .iter()
        .any(|r| r.statement == "iifname \"eth*\" counter accept"));
}

#[test]
fn reject_any_splits_tcp_reset_and_icmp() {
    let rs = render(&spec("  - { action: reject, sources: [192.0.2.0/24] }").expect("valid"))
        .expect("enabled");
    let user: Vec<&NftRule> = rs.chains[0]
        .rules
        .iter()
        .filter(|r| matches!(r.tag, RuleTag::User { .. }))
        .collect();
    assert_eq!(user.len(), 2);
    assert_eq!(user[0].tag.to_string(), "rule:0/v4/tcp");
    assert!(user[0]
        .statement
        .starts_with("meta l4proto tcp ip saddr @r0_src4_"));
    assert!(user[0].statement.ends_with("counter reject with tcp reset"));
    assert_eq!(user[1].tag.to_string(), "rule:0/v4/other");
    assert!(user[1]
        .statement
        .ends_with("counter reject with icmpx port-unreachable"));
    let rs = render(&spec("  - { action: reject, protocol: tcp, ports: [1] }").expect("valid"))
        .expect("enabled");
    assert!(rs.chains[0]
        .rules
        .iter()
        .any(|r| r.statement == "tcp dport { 1 } counter reject with tcp reset"));
}

#[test]
fn cidrs_are_aggregated_into_named_interval_sets() {
    let s = spec(
        "  - { action: accept, sources: [10.0.0.0/25, 10.0.0.128/25, 10.0.0.5, 10.1.0.0/16, 10.1.2.0/24, \"2001:db8::/33\", \"2001:db8:8000::/33\"] }",
    )
    .expect("valid");
    let rs = render(&s).expect("enabled");
    let v4 = rs
        .sets
        .iter()
        .find(|s| s.name.starts_with("r0_src4_"))
        .expect("v4 set");
    let v4s: Vec<String> = v4.elements.iter().map(ToString::to_string).collect();
    assert_eq!(v4s, ["10.0.0.0/24", "10.1.0.0/16"]);
    let v6 = rs
        .sets
        .iter()
        .find(|s| s.name.starts_with("r0_src6_"))
        .expect("v6 set");
    assert!(v6.v6);
    assert_eq!(
        v6.elements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["2001:db8::/32"]
    );
    // Management sets + the two rule sets.
    assert_eq!(rs.sets.len(), 4);
}

#[test]
fn set_names_follow_content() {
    let a =
        render(&spec("  - { action: accept, sources: [10.0.0.0/8] }").expect("valid")).expect("on");
    let b =
        render(&spec("  - { action: accept, sources: [10.0.0.0/8] }").expect("valid")).expect("on");
    let c =
        render(&spec("  - { action: accept, sources: [11.0.0.0/8] }").expect("valid")).expect("on");
    assert_eq!(a, b);
    let name = |r: &Ruleset| {
        r.sets
            .iter()
            .find(|s| s.name.starts_with("r0_"))
            .map(|s| s.name.clone())
    };
    assert_eq!(name(&a), name(&b));
    assert_ne!(name(&a), name(&c));
}

#[test]
fn ports_merged_and_sorted() {
    let rs = render(
        &spec("  - { action: accept, protocol: udp, ports: [\"100-200\", 150, 201, 5, \"300-400\", \"350-360\"] }")
            .expect("valid"),
    )
    .expect("on");
    assert!(rs.chains[0]
        .rules
        .iter()
        .any(|r| r.statement == "udp dport { 5, 100-201, 300-400 } counter accept"));
}

#[test]
fn outbound_policy_drop_adds_protected_output_chain() {
    let s = FirewallSpec::from_yaml(&format!("{BASE}outbound_policy: drop\n")).expect("valid");
    let rs = render(&s).expect("on");
    let out = rs
        .chains
        .iter()
        .find(|c| c.name == "output")
        .expect("output chain");
    assert_eq!(out.policy, "drop");
    assert!(out
        .rules
        .iter()
        .any(|r| r.tag.to_string() == "mgmt/v4" && r.statement.starts_with("ip daddr @mgmt4_")));
    assert!(out
        .rules
        .iter()
        .any(|r| r.tag.to_string() == "default:established"));
    // Without outbound rules and policy accept the output chain is kept,
    // empty, with policy accept (a live base chain is never deleted).
    let rs = render(&FirewallSpec::from_yaml(BASE).expect("valid")).expect("on");
    assert_eq!(rs.chains.len(), 2);
    assert_eq!(
        (
            rs.chains[1].name,
            rs.chains[1].policy,
            rs.chains[1].rules.len()
        ),
        ("output", "accept", 0)
    );
}

#[test]
fn spec_round_trips_through_yaml() {
    let s = spec("  - { action: accept, protocol: tcp, ports: [22, \"8000-8080\"], sources: [198.51.100.0/24], comment: web }")
        .expect("valid");
    let text = serde_norway::to_string(&s).expect("serialize");
    assert_eq!(FirewallSpec::from_yaml(&text).expect("reparse"), s);
}

#[test]
fn rule_tags_round_trip() {
    for t in [
        RuleTag::Default("established".into()),
        RuleTag::Management("v6".into()),
        RuleTag::User {
            index: 12,
            variant: String::new(),
        },
        RuleTag::User {
            index: 3,
            variant: "v4/tcp".into(),
        },
    ] {
        let c = format!("{t} my comment here");
        assert_eq!(
            RuleTag::parse(&c),
            Some((t.clone(), Some("my comment here".into())))
        );
        assert_eq!(RuleTag::parse(&t.to_string()), Some((t, None)));
    }
    assert_eq!(RuleTag::parse("docker rule"), None);
    assert_eq!(RuleTag::parse("rule:x"), None);
}

/// Captured from `nft -j list table inet hostd` (nftables 1.0.6) after
/// rendering a spec with one user rule split into v4 and v6.
const LISTING: &str = include_str!("testdata/listing.json");

#[test]
fn counters_parse_and_sum_per_spec_rule() {
    let st = parse_listing(LISTING).expect("parses");
    assert!(st.chains.contains(&("input".to_owned(), "drop".to_owned())));
    assert!(st
        .sets
        .iter()
        .any(|(n, c)| n.starts_with("r0_src4_") && *c == 2));
    let rows = st.rows();
    let r0 = rows
        .iter()
        .find(|r| r.what == "rules[0]")
        .expect("rule 0 row");
    // v4 variant counted 3 packets / 180 bytes, v6 variant 2 / 160.
    assert_eq!((r0.packets, r0.bytes), (5, 340));
    assert_eq!(r0.comment.as_deref(), Some("web"));
    let est = rows
        .iter()
        .find(|r| r.what == "default:established")
        .expect("established");
    assert_eq!(est.chain, "input");
    assert!(rows.iter().any(|r| r.what == "mgmt"));
    // The fingerprint rides in the input chain's policy rule comment.
    assert_eq!(st.fingerprint.as_deref(), Some("00112233aabbccdd"));
    assert!(parse_listing("{}").is_err());
    assert!(parse_listing("not json").is_err());
}

#[test]
fn fingerprint_follows_content_and_is_stored_in_input_chain() {
    let a = render(&spec("  - { action: accept, protocol: tcp, ports: [80] }").expect("valid"))
        .expect("on");
    let b = render(&spec("  - { action: accept, protocol: tcp, ports: [80] }").expect("valid"))
        .expect("on");
    let c = render(&spec("  - { action: accept, protocol: tcp, ports: [81] }").expect("valid"))
        .expect("on");
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.fingerprint, c.fingerprint);
    assert_eq!(a.fingerprint.len(), 16);
    let last = a.chains[0].rules.last().expect("policy rule");
    let carrier = a.model().fingerprint();
    assert_eq!(
        last.nft_comment(),
        format!(
            "default:policy fp={} input={} output={} sets={}",
            a.fingerprint,
            carrier.chains["input"],
            carrier.chains["output"],
            carrier.sets.as_deref().expect("sets hash")
        )
    );
    assert_eq!(carrier.fingerprint, a.fingerprint);
}

fn lines_matching<'a>(script: &'a str, prefix: &str) -> Vec<(usize, &'a str)> {
    script
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(prefix))
        .collect()
}

#[test]
fn update_script_from_absent_table_creates_everything() {
    let rs =
        render(&spec("  - { action: accept, sources: [10.0.0.0/8] }").expect("valid")).expect("on");
    let script = rs.update_script(&Current::default());
    assert_eq!(
        lines_matching(&script, "add set inet hostd ").len(),
        rs.sets.len()
    );
    assert!(script.starts_with("add table inet hostd\n"));
    assert!(script.contains(
        "add chain inet hostd input { type filter hook input priority filter; policy drop; }"
    ));
    assert!(!script.contains("flush"));
    assert!(!script.contains("delete"));
    let rules = lines_matching(&script, "add rule inet hostd input ");
    assert_eq!(rules.len(), rs.chains[0].rules.len());
}

#[test]
fn update_script_keeps_unchanged_sets_and_drops_stale_ones() {
    let old = render(
        &FirewallSpec::from_yaml(&format!(
            "{BASE}outbound_policy: drop\nrules:\n  - {{ action: accept, sources: [10.0.0.0/8] }}\n  - {{ action: drop, sources: [11.0.0.0/8] }}"
        ))
        .expect("valid"),
    )
    .expect("on");
    let new = render(
        &spec("  - { action: accept, sources: [10.0.0.0/8] }\n  - { action: drop, sources: [12.0.0.0/8] }")
            .expect("valid"),
    )
    .expect("on");
    let current = Current {
        present: true,
        fingerprint: Some(old.fingerprint.clone()),
        chains: ["input".to_owned(), "output".to_owned()].into(),
        sets: old.sets.iter().map(|s| s.name.clone()).collect(),
        ..Current::default()
    };
    let script = new.update_script(&current);
    // Only the changed set is loaded; the unchanged ones are kept.
    let added = lines_matching(&script, "add set ");
    assert_eq!(added.len(), 1, "{script}");
    assert!(added[0].1.starts_with("add set inet hostd r1_src4_"));
    // Stale sets are not deleted in the switch itself, but right after.
    assert!(
        lines_matching(&script, "delete set ").is_empty(),
        "{script}"
    );
    let cleanup = new.cleanup_script(&current).expect("one stale set");
    let deleted = lines_matching(&cleanup, "delete set ");
    assert_eq!(deleted.len(), 1);
    let stale = old
        .sets
        .iter()
        .find(|s| s.name.starts_with("r1_src4_"))
        .expect("old r1 set");
    assert_eq!(
        deleted[0].1,
        format!("delete set inet hostd {}", stale.name)
    );
    // The output chain stays (policy back to accept, no rules): flushed, never deleted.
    let flushes = lines_matching(&script, "flush chain ");
    assert_eq!(
        flushes.iter().map(|l| l.1).collect::<Vec<_>>(),
        [
            "flush chain inet hostd input",
            "flush chain inet hostd output"
        ]
    );
    assert!(!script.contains("delete chain"));
    assert!(script.contains(
        "add chain inet hostd output { type filter hook output priority filter; policy accept; }"
    ));
    // Order: every flush before the rules.
    let first_rule = lines_matching(&script, "add rule ")[0].0;
    assert!(flushes.iter().all(|f| f.0 < first_rule));
    assert!(new
        .cleanup_script(&Current {
            sets: new.sets.iter().map(|s| s.name.clone()).collect(),
            ..Current::default()
        })
        .is_none());
}

#[test]
fn reload_script_keeps_base_chains_and_reloads_every_set() {
    let rs =
        render(&spec("  - { action: accept, sources: [10.0.0.0/8] }").expect("valid")).expect("on");
    let current = Current {
        present: true,
        fingerprint: None,
        chains: [
            "input".to_owned(),
            "output".to_owned(),
            "handmade".to_owned(),
        ]
        .into(),
        sets: rs
            .sets
            .iter()
            .map(|s| s.name.clone())
            .chain(["stray".to_owned()])
            .collect(),
        objects: [("counter".to_owned(), "handcount".to_owned())].into(),
        ..Current::default()
    };
    let script = rs.reload_script(&current);
    assert!(!script.contains("delete table"));
    assert!(!script.contains("delete chain inet hostd input"));
    assert!(!script.contains("delete chain inet hostd output"));
    assert!(script.contains("delete chain inet hostd handmade\n"));
    assert!(script.contains("delete counter inet hostd handcount\n"));
    assert!(!script.contains("flush table"));
    let flush = lines_matching(&script, "flush chain inet hostd ")
        .last()
        .expect("flushes")
        .0;
    let deletes = lines_matching(&script, "delete set ");
    assert_eq!(deletes.len(), rs.sets.len() + 1);
    let adds = lines_matching(&script, "add set ");
    assert_eq!(adds.len(), rs.sets.len());
    assert!(deletes.iter().all(|d| d.0 > flush && d.0 < adds[0].0));
}

#[test]
fn current_state_parsed_from_listing() {
    let cur = parse_current(&[LISTING]).expect("parses");
    assert!(cur.chains.contains("input"));
    assert!(cur.sets.iter().any(|s| s.starts_with("mgmt4_")));
    assert!(cur.sets.iter().any(|s| s.starts_with("r0_src6_")));
    assert_eq!(cur.sets.len(), 4);
    assert!(parse_current(&["[]"]).is_err());
    let empty = parse_current(&[]).expect("nothing listed");
    assert_eq!(empty, Current::default());
}

#[test]
fn whole_document_or_section() {
    let whole = "interfaces: []\nfirewall:\n  management:\n    controllers: [192.0.2.10]\n    channel_port: 7443\n  rules:\n    - { action: accept, protocol: tcp, ports: [70000] }\n".to_owned();
    let e = FirewallSpec::from_document(&whole)
        .expect_err("bad port")
        .to_string();
    assert!(
        e.starts_with("firewall.rules[0].ports[0]: 70000 is not a port (1..=65535)"),
        "{e}"
    );
    let ok = whole.replace("70000", "22");
    let s = FirewallSpec::from_document(&ok).expect("valid");
    assert_eq!(s.rules[0].ports[0].to_string(), "22");
    let section = format!("{BASE}rules: []\n");
    assert!(FirewallSpec::from_document(&section).is_ok());
    assert!(FirewallSpec::from_document("[1, 2").is_err());
}

#[test]
fn interval_elements_match_what_nft_sends() {
    // `nft --debug=netlink` for elements = { 10.0.0.0/24, 10.0.1.0/24, 10.0.3.5, 255.255.255.0/24 }:
    // 0.0.0.0 end, 10.0.0.0, 10.0.1.0 end, 10.0.1.0, 10.0.2.0 end, 10.0.3.5,
    // 10.0.3.6 end, 255.255.255.0 (open).
    let set = NamedSet {
        name: "s".into(),
        v6: false,
        elements: [
            "10.0.1.0/24",
            "10.0.0.0/24",
            "10.0.3.5/32",
            "255.255.255.0/24",
        ]
        .iter()
        .map(|s| s.parse().expect("net"))
        .collect(),
    };
    let got: Vec<(String, bool, bool)> = set
        .interval_elements()
        .into_iter()
        .map(|e| {
            let k: [u8; 4] = e.key.as_slice().try_into().expect("4 bytes");
            (std::net::Ipv4Addr::from(k).to_string(), e.end, e.open)
        })
        .collect();
    let want = [
        ("0.0.0.0", true, false),
        ("10.0.0.0", false, false),
        ("10.0.1.0", true, false),
        ("10.0.1.0", false, false),
        ("10.0.2.0", true, false),
        ("10.0.3.5", false, false),
        ("10.0.3.6", true, false),
        ("255.255.255.0", false, true),
    ];
    assert_eq!(got, want.map(|(a, b, c)| (a.to_owned(), b, c)));
    // IPv6, starting at :: (no leading end marker), and the whole space.
    let v6 = NamedSet {
        name: "s6".into(),
        v6: true,
        elements: vec!["::/1".parse().expect("net")],
    };
    let e = v6.interval_elements();
    assert_eq!(e.len(), 2);
    assert_eq!((e[0].key.len(), e[0].end), (16, false));
    assert_eq!(e[1].key[0], 0x80);
    assert!(e[1].end);
    let all = NamedSet {
        name: "a".into(),
        v6: false,
        elements: vec!["0.0.0.0/0".parse().expect("net")],
    };
    assert_eq!(
        all.interval_elements(),
        vec![IntervalElement {
            key: vec![0; 4],
            end: false,
            open: true
        }]
    );
}
