//! The fingerprint and hand-edit detection, on listings captured from nft
//! 1.0.6 on Linux 6.18: hostd applied `testdata/drift/spec.yaml`, then each
//! case edited the table by hand with nft (`testdata/drift/capture.sh`).

use ipnet::IpNet;
use serde_json::Value;

use super::*;

const SPEC: &str = include_str!("testdata/drift/spec.yaml");

fn rendered() -> Ruleset {
    render(&FirewallSpec::from_yaml(SPEC).expect("valid")).expect("enabled")
}

fn json(case: &str) -> String {
    let path = format!(
        "{}/src/firewall/testdata/drift/{case}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn listed(case: &str) -> Model {
    Model::from_listing(&json(case)).expect("listing")
}

fn texts(d: &[Drift]) -> Vec<String> {
    d.iter().map(ToString::to_string).collect()
}

/// Rewrites a listing (`edit` on each item) and reads it back.
fn edited(case: &str, edit: impl Fn(&mut Value)) -> Model {
    let mut v: Value = serde_json::from_str(&json(case)).expect("json");
    v["nftables"]
        .as_array_mut()
        .expect("array")
        .iter_mut()
        .for_each(edit);
    Model::from_listing(&v.to_string()).expect("listing")
}

#[test]
fn golden_fingerprint_of_a_fixed_spec() {
    // These values change only when the rendering or the documented
    // fingerprint format (model.rs, docs/firewall.md) changes; they do not
    // depend on the Rust release or the machine.
    let rs = rendered();
    assert_eq!(rs.fingerprint, "b54ebc55b6f1cffe");
    assert_eq!(
        rs.chains[0].rules.last().expect("carrier").nft_comment(),
        "default:policy fp=b54ebc55b6f1cffe input=d861faeb output=f5417531 sets=8c686868"
    );
    let names: Vec<&str> = rs.sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mgmt4_3b683ef3",
            "mgmt6_697524c0",
            "r0_src4_d1200526",
            "r0_src6_8c4d7398",
            "r2_src4_788effb8",
            "r4_dst4_7babcc00",
            "r5_dst4_6711b459",
            "r7_src6_ccbdc327",
            "r8_dst4_cb443828",
        ]
    );
    assert_eq!(
        rs.model().canonical_text(),
        include_str!("testdata/drift/canonical.txt")
    );
    // A set's name: SHA-256 of "ipv4_addr 198.51.100.0-198.51.100.255".
    assert_eq!(
        content_hash(false, &[(0xc633_6400, 0xc633_64ff)]),
        "d1200526"
    );
}

#[test]
fn the_applied_table_lists_as_rendered() {
    let rs = rendered();
    let m = listed("applied");
    assert_eq!(m.check(), []);
    assert_eq!(m.fingerprint(), rs.model().fingerprint());
    assert_eq!(m.recorded(), Some(rs.model().fingerprint()));
    assert_eq!(diff(&rs.model(), &m), []);
    // Term by term, whatever nft changed in the spelling.
    for (name, chain) in &rs.model().chains {
        let terms: Vec<_> = chain.rules.iter().map(|r| &r.terms).collect();
        let listed: Vec<_> = m.chains[name].rules.iter().map(|r| &r.terms).collect();
        assert_eq!(terms, listed, "chain {name}");
    }
    let cur = Current::from_model(m);
    assert_eq!(cur.fingerprint.as_deref(), Some("b54ebc55b6f1cffe"));
    assert_eq!(cur.hand_edits(&rs), []);
    assert_eq!(cur.sets.len(), rs.sets.len());
}

#[test]
fn hand_edits_found_without_the_spec() {
    let cases: &[(&str, &[&str])] = &[
        (
            "insert-rule",
            &["chain input: rule (handle 90) `tcp dport 23 counter accept` was not rendered by hostd (added by hand)"],
        ),
        (
            "delete-rule",
            &["chain input: its rules or policy differ from what hostd rendered (a rule deleted, changed or moved, or the policy changed)"],
        ),
        (
            "add-element",
            &["the table hashes to 55ff68a9dba37272, hostd recorded b54ebc55b6f1cffe (every chain matches its hash: the elements or the type of a set were changed by hand)"],
        ),
        ("input-policy", &["chain input: policy accept, hostd rendered policy drop"]),
        ("output-policy", &["chain output: policy drop, hostd rendered policy accept"]),
        (
            "replace-rule",
            &["chain input: its rules or policy differ from what hostd rendered (a rule deleted, changed or moved, or the policy changed)"],
        ),
        (
            "foreign-objects",
            &[
                "chain extra: not rendered by hostd (added by hand)",
                "counter handcount: not rendered by hostd (added by hand)",
            ],
        ),
    ];
    for (case, want) in cases {
        let m = listed(case);
        assert_eq!(texts(&m.check()), *want, "{case}");
        // Never taken for the ruleset it was.
        let cur = Current::from_model(m);
        assert_eq!(cur.fingerprint, None, "{case}");
        assert_eq!(cur.recorded.as_deref(), Some("b54ebc55b6f1cffe"), "{case}");
    }
}

#[test]
fn hand_edits_named_exactly_with_the_spec() {
    let cases: &[(&str, &[&str])] = &[
        (
            "insert-rule",
            &["chain input: rule (handle 90) `tcp dport 23 counter accept` was not rendered by hostd (added by hand)"],
        ),
        (
            "delete-rule",
            &["chain input: rule rule:2/v4 `ip saddr @r2_src4_788effb8 counter drop` is missing (deleted by hand)"],
        ),
        (
            "add-element",
            &["set r0_src4_d1200526: elements changed by hand; added 10.0.0.0/8"],
        ),
        ("input-policy", &["chain input: policy accept, hostd rendered policy drop"]),
        ("output-policy", &["chain output: policy drop, hostd rendered policy accept"]),
        (
            "replace-rule",
            &["chain input: rule rule:1 (handle 310) is `iifname eth0 udp dport { 53, 54 } counter reject with icmpx port-unreachable`, \
               hostd rendered `iifname eth0 udp dport 53 counter reject with icmpx port-unreachable`"],
        ),
        (
            "foreign-objects",
            &[
                "chain extra: not rendered by hostd (added by hand)",
                "counter handcount: not rendered by hostd (added by hand)",
            ],
        ),
    ];
    let rs = rendered();
    for (case, want) in cases {
        let cur = Current::from_model(listed(case));
        assert_eq!(texts(&cur.hand_edits(&rs)), *want, "{case}");
    }
}

#[test]
fn a_rewrite_removes_what_was_added_by_hand() {
    let rs = rendered();
    let cur = Current::from_model(listed("foreign-objects"));
    let script = rs.reload_script(&cur);
    assert!(
        script.contains("flush chain inet hostd extra\n"),
        "{script}"
    );
    assert!(
        script.contains("delete chain inet hostd extra\n"),
        "{script}"
    );
    assert!(
        script.contains("delete counter inet hostd handcount\n"),
        "{script}"
    );
}

#[test]
fn carrier_missing_altered_or_from_an_older_hostd() {
    fn comment(to: Option<&'static str>) -> impl Fn(&mut Value) {
        move |item: &mut Value| {
            let Some(r) = item.get_mut("rule") else {
                return;
            };
            if r["comment"]
                .as_str()
                .is_some_and(|c| c.starts_with("default:policy fp="))
            {
                match to {
                    Some(c) => r["comment"] = c.into(),
                    None => {
                        r.as_object_mut().expect("rule").remove("comment");
                    }
                }
            }
        }
    }
    let gone = edited("applied", comment(None));
    assert_eq!(texts(&gone.check()), [
        "chain input: the rule carrying hostd's fingerprint (default:policy fp=...) is missing or changed"
    ]);
    let old = edited(
        "applied",
        comment(Some("default:policy fp=00112233aabbccdd")),
    );
    assert_eq!(
        texts(&old.check()),
        ["fingerprint 00112233aabbccdd was written by an older hostd (no chain or set hashes): the table cannot be checked"]
    );
    let forged = edited(
        "applied",
        comment(Some(
            "default:policy fp=ffffffffffffffff input=d861faeb output=f5417531 sets=8c686868",
        )),
    );
    assert_eq!(
        texts(&forged.check()),
        ["the table hashes to b54ebc55b6f1cffe, hostd recorded ffffffffffffffff (every chain matches its hash: the elements or the type of a set were changed by hand)"]
    );
}

#[test]
fn a_terse_listing_checks_all_but_the_elements() {
    let terse = |item: &mut Value| {
        if let Some(s) = item.get_mut("set") {
            s.as_object_mut().expect("set").remove("elem");
        }
    };
    // Without elements an added element goes unseen (hostd reads them over
    // netlink instead), everything else is still checked.
    assert_eq!(edited("add-element", terse).check(), []);
    assert_eq!(edited("insert-rule", terse).check().len(), 1);
    let mut m = edited("add-element", terse);
    let name = "r0_src4_d1200526";
    let set = NamedSet {
        name: name.into(),
        v6: false,
        elements: vec![
            "10.0.0.0/8".parse().expect("net"),
            "198.51.100.0/24".parse().expect("net"),
        ],
    };
    // With the elements of only some sets read, the recorded hash of the
    // sets stands: no drift.
    m.set_interval_elements(name, &set.interval_elements());
    assert_eq!(m.check(), []);
    // With all of them read (hostd dumps every set in use), the added
    // element is found.
    for (n, s) in &listed("applied").sets {
        if n != name {
            if let Some(t) = m.sets.get_mut(n) {
                t.elements.clone_from(&s.elements);
            }
        }
    }
    assert_eq!(texts(&m.check()), [
        "the table hashes to 55ff68a9dba37272, hostd recorded b54ebc55b6f1cffe (every chain matches its hash: the elements or the type of a set were changed by hand)"
    ]);
}

#[test]
fn unused_sets_are_not_part_of_the_fingerprint() {
    // A set no rule uses (left when the clean-up after a switch failed) has
    // no effect on packets: reported apart, never a hand edit.
    let mut v: Value = serde_json::from_str(&json("applied")).expect("json");
    let items = v["nftables"].as_array_mut().expect("array");
    items.push(
        serde_json::json!({"set": {"family": "inet", "table": "hostd",
        "name": "r9_src4_00000000", "type": "ipv4_addr", "flags": ["interval"],
        "elem": ["192.0.2.99"]}}),
    );
    let m = Model::from_listing(&v.to_string()).expect("listing");
    assert_eq!(m.check(), []);
    assert_eq!(m.unused_sets(), ["r9_src4_00000000"]);
    assert!(Current::from_model(m).sets.contains("r9_src4_00000000"));
}

#[test]
fn rendered_statements_parse_without_leftovers() {
    for chain in &rendered().model().chains {
        for r in &chain.1.rules {
            assert!(
                !r.terms.iter().any(|t| matches!(t, Term::Other(_))),
                "{:?}: {:?}",
                r.comment,
                r.terms
            );
            assert!(r.terms.contains(&Term::Counter), "{:?}", r.comment);
        }
    }
    let t = |s: &str| terms_text(&parse_statement(s));
    assert_eq!(
        t("iifname \"eth0\" udp dport { 53 } counter reject with icmpx port-unreachable"),
        "iifname eth0 udp dport 53 counter reject with icmpx port-unreachable"
    );
    // nft hides these dependencies when listing: so does the model.
    assert_eq!(
        t("meta nfproto ipv4 meta l4proto icmp counter accept"),
        t("meta l4proto icmp counter accept")
    );
    assert_eq!(
        t("meta l4proto tcp tcp dport { 22, 8000-8080 } counter accept"),
        "tcp dport { 22, 8000-8080 } counter accept"
    );
    assert_eq!(
        t("ct state established,related accept"),
        "ct state { established, related } accept"
    );
    // Anything hostd never writes is kept verbatim, so it always differs.
    assert_eq!(
        parse_statement("tcp dport 22 log prefix \"x\" accept"),
        [
            Term::Match {
                key: "tcp dport".into(),
                op: "==".into(),
                values: vec!["22".into()]
            },
            Term::Other("log prefix \"x\" accept".into())
        ]
    );
}

#[test]
fn nft_json_terms_normalize_like_the_render() {
    let rule = |expr: Value| {
        let v = serde_json::json!({"nftables": [
            {"table": {"family": "inet", "name": "hostd"}},
            {"rule": {"family": "inet", "table": "hostd", "chain": "input", "expr": expr}}
        ]});
        let m = Model::from_listing(&v.to_string()).expect("listing");
        terms_text(&m.chains["input"].rules[0].terms)
    };
    let dport = |right: Value| serde_json::json!({"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": right}});
    assert_eq!(
        rule(serde_json::json!([dport(serde_json::json!({"set": [53]})), {"reject": null}])),
        rule(
            serde_json::json!([dport(53.into()), {"reject": {"type": "icmpx", "expr": "port-unreachable"}}])
        )
    );
    assert_eq!(
        rule(
            serde_json::json!([dport(serde_json::json!({"set": [{"range": [8000, 8080]}, 22]})), {"accept": null}])
        ),
        "udp dport { 22, 8000-8080 } accept"
    );
    // Expressions hostd never writes stay verbatim.
    assert_eq!(
        rule(serde_json::json!([{"log": {"prefix": "x"}}, {"accept": null}])),
        "{\"log\":{\"prefix\":\"x\"}} accept"
    );
}

#[test]
fn interval_elements_round_trip_to_ranges() {
    let cases: &[(bool, &[&str])] = &[
        (false, &["10.0.0.0/24", "192.0.2.7/32"]),
        (false, &["0.0.0.0/0"]),
        (false, &["0.0.0.0/8", "255.255.255.255/32"]),
        (false, &["10.9.0.0/23", "10.9.2.0/24", "10.9.3.5/32"]),
        (true, &["::/0"]),
        (true, &["2001:db8::/32", "fe80::/10", "ffff::/16"]),
    ];
    for (v6, nets) in cases {
        let elements: Vec<IpNet> = nets.iter().map(|n| n.parse().expect("net")).collect();
        let set = NamedSet {
            name: "x".into(),
            v6: *v6,
            elements: IpNet::aggregate(&elements),
        };
        let want = model::merge_ranges(elements.iter().map(model::net_range).collect());
        let mut els = set.interval_elements();
        assert_eq!(ranges_from_intervals(*v6, &els), want, "{nets:?}");
        // Whatever order the kernel dumps them in.
        els.reverse();
        assert_eq!(ranges_from_intervals(*v6, &els), want, "{nets:?} reversed");
        // And back to the networks, merged where they touch.
        let back: Vec<String> = want
            .iter()
            .flat_map(|r| model::range_cidrs(*v6, *r))
            .map(|n| n.to_string())
            .collect();
        let agg: Vec<String> = IpNet::aggregate(&elements)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(back, agg, "{nets:?}");
    }
}

#[test]
fn set_names_carry_their_content_hash() {
    assert_eq!(set_name_hash("r0_src4_d1200526"), Some((false, "d1200526")));
    assert_eq!(set_name_hash("mgmt6_697524c0"), Some((true, "697524c0")));
    assert_eq!(set_name_hash("r12_dst6_0011aabb"), Some((true, "0011aabb")));
    for foreign in [
        "blocklist",
        "r0_src4_xyz",
        "r_src4_00112233",
        "mgmt5_00112233",
        "x4_00112233",
    ] {
        assert_eq!(set_name_hash(foreign), None, "{foreign}");
    }
}

#[test]
fn an_update_never_reuses_a_set_edited_by_hand() {
    // Another spec that keeps rule 0's sources: its set would be reused by
    // name, so its elements are checked against what the name stands for.
    let other = render(
        &FirewallSpec::from_yaml(&SPEC.replace("ports: [53]", "ports: [54]")).expect("valid"),
    )
    .expect("enabled");
    assert_ne!(other.fingerprint, rendered().fingerprint);
    let cur = Current::from_model(listed("add-element"));
    assert_eq!(
        texts(&cur.stale_reused_sets(&other)),
        ["set r0_src4_d1200526: elements changed by hand; added 10.0.0.0/8"]
    );
    // The check without the spec sees that some set changed; the reuse
    // check names it.
    let edits = texts(&cur.hand_edits(&other));
    assert_eq!(edits.len(), 2, "{edits:?}");
    assert!(edits[0].starts_with("the table hashes to "), "{edits:?}");
    assert_eq!(
        edits[1],
        "set r0_src4_d1200526: elements changed by hand; added 10.0.0.0/8"
    );
    assert!(Current::from_model(listed("applied"))
        .stale_reused_sets(&other)
        .is_empty());
}

/// `content_hash` writes IPv4 addresses by hand: the hash must be the
/// SHA-256 of exactly the text `Display` prints (set names in live tables
/// carry it), for every octet width and for IPv6.
#[test]
fn content_hash_is_the_hash_of_the_display_text() {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    fn reference(v6: bool, ranges: &[(u128, u128)]) -> String {
        let addr = |v: u128| -> String {
            if v6 {
                std::net::Ipv6Addr::from(v).to_string()
            } else {
                std::net::Ipv4Addr::from(v as u32).to_string()
            }
        };
        let mut s = String::from(if v6 { "ipv6_addr " } else { "ipv4_addr " });
        for (i, &(a, b)) in ranges.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&addr(a));
            if a != b {
                s.push('-');
                s.push_str(&addr(b));
            }
        }
        Sha256::digest(s.as_bytes())
            .iter()
            .take(4)
            .fold(String::new(), |mut h, b| {
                let _ = write!(h, "{b:02x}");
                h
            })
    }
    // Every octet value in every position, with single addresses and ranges.
    let mut v4 = Vec::new();
    for o in 0u32..=255 {
        let a = (o << 24) | (o.wrapping_mul(7) % 256) << 16 | (o.wrapping_mul(13) % 256) << 8 | o;
        v4.push((u128::from(a), u128::from(a) + u128::from(o % 3)));
    }
    v4.push((0, u128::from(u32::MAX)));
    assert_eq!(content_hash(false, &v4), reference(false, &v4));
    for chunk in v4.chunks(17) {
        assert_eq!(content_hash(false, chunk), reference(false, chunk));
    }
    let v6 = [
        (0x2001_0db8_u128 << 96, (0x2001_0db8_u128 << 96) + 0xffff),
        (1, 1),
        (u128::MAX, u128::MAX),
    ];
    assert_eq!(content_hash(true, &v6), reference(true, &v6));
    assert_eq!(content_hash(false, &[]), reference(false, &[]));
}
